//! Storing what the windows cut: each batch becomes an object, then its
//! manifest, then the commit of the offset after its last record, with the
//! store retried (backoff) until it works or the backup stops.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::consumer::{BackupSummary, now_ms};
use super::group::BackupContext;
use super::metrics::BackupMetrics;
use super::object::seal;
use super::store::BackupStore;
use super::window::{Batch, Windows};

/// First delay after a failed store write.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest delay between store write attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The shutdown future, polled until it resolves once (then remembered).
pub(super) struct Stop<F> {
    fut: Pin<Box<F>>,
    pub(super) done: bool,
}

impl<F: Future<Output = ()>> Stop<F> {
    pub(super) fn new(fut: F) -> Self {
        Stop {
            fut: Box::pin(fut),
            done: false,
        }
    }

    /// Resolves when shutdown is asked for (at once if it already was).
    pub(super) async fn wait(&mut self) {
        if !self.done {
            self.fut.as_mut().await;
            self.done = true;
        }
    }

    /// Sleeps `delay`; `true` if shutdown was asked for meanwhile.
    pub(super) async fn sleep(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = self.wait() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }
}

/// Stores cut batches and commits their offsets, counting what it did.
pub(super) struct Writer<'a> {
    pub(super) consumer: &'a StreamConsumer<BackupContext>,
    pub(super) store: BackupStore,
    pub(super) summary: BackupSummary,
    pub(super) metrics: BackupMetrics,
    pub(super) abort_after_objects: Option<u64>,
}

impl Writer<'_> {
    /// Stores the object, then its manifest, then commits the offset after
    /// its last record. A failing store (full disk, no file descriptors, a
    /// network error) is retried with backoff (100 ms doubling to 30 s)
    /// until it works or `stop` is set (then `Err`: nothing is committed,
    /// the next run writes the same object again).
    pub(super) async fn write<F: Future<Output = ()>>(
        &mut self,
        batch: Batch,
        stop: &mut Stop<F>,
    ) -> anyhow::Result<()> {
        let sealed = seal(&batch, now_ms()).with_context(|| {
            format!(
                "compressing partition {} offsets {}..={}",
                batch.partition, batch.stats.first_offset, batch.stats.last_offset
            )
        })?;
        let data_key = sealed.name.data_key();
        let bytes = sealed.data.len() as u64;
        let manifest = sealed.manifest.to_json();
        let mut delay = RETRY_MIN;
        loop {
            let stored = match self.store.put(&data_key, sealed.data.clone()).await {
                Ok(()) => {
                    self.store
                        .put(&sealed.name.manifest_key(), manifest.clone())
                        .await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => break,
                Err(e) if !stop.done => {
                    self.summary.store_errors += 1;
                    self.metrics.store_errors.inc();
                    self.metrics.retry_delay.set(delay.as_secs_f64());
                    warn!(
                        error = format!("{e:#}"),
                        object = %data_key,
                        retry_in_ms = delay.as_millis() as u64,
                        "backup: cannot store the object; retrying"
                    );
                    stop.sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    return Err(e).context(
                        "stopping while the store kept failing (nothing committed for this object)",
                    );
                }
            }
        }
        self.metrics.retry_delay.set(0.0);
        self.summary.objects += 1;
        self.summary.bytes += bytes;
        if self
            .abort_after_objects
            .is_some_and(|n| self.summary.objects >= n)
        {
            warn!(object = %data_key, "backup: aborting before the commit (crash test)");
            std::process::abort();
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &batch.topic,
            batch.partition,
            Offset::Offset(batch.stats.last_offset + 1),
        )
        .context("building the offset commit")?;
        // A commit that keeps failing stops the backup (its supervisor
        // restarts it): going on would store later objects of the partition
        // uncommitted, and a rewrite from the last committed offset could then
        // cut differently and store records twice. With at most one
        // uncommitted object per partition, a rewrite replaces it by name.
        let mut attempt = 0;
        loop {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    warn!(error = %e, attempt, object = %data_key, "backup: offset commit failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    self.summary.commit_failures += 1;
                    self.metrics.commit_failures.inc();
                    return Err(e).with_context(|| {
                        format!(
                            "committing offset {} of {}/{} after storing {data_key} \
                             (the next run rewrites this object from the last committed offset)",
                            batch.stats.last_offset + 1,
                            batch.topic,
                            batch.partition
                        )
                    });
                }
            }
        }
        self.summary.stored += batch.stats.records;
        self.metrics.objects.inc();
        self.metrics.bytes.inc_by(bytes);
        self.metrics.stored.inc_by(batch.stats.records);
        self.metrics.last_stored.set(now_ms() as f64 / 1000.0);
        info!(
            object = %data_key,
            partition = batch.partition,
            first_offset = batch.stats.first_offset,
            last_offset = batch.stats.last_offset,
            records = batch.stats.records,
            bytes,
            cut = ?batch.cut,
            "backup: object stored and offset committed"
        );
        Ok(())
    }

    /// Writes `batches` in order, keeping `edge_backup_pending_records` and
    /// the oldest pending record's time current: a batch counts as pending
    /// until it is committed, also while its store is retried.
    pub(super) async fn write_all<F: Future<Output = ()>>(
        &mut self,
        batches: Vec<Batch>,
        windows: &Windows,
        stop: &mut Stop<F>,
    ) -> anyhow::Result<()> {
        let mut waiting: VecDeque<Batch> = batches.into();
        while let Some(batch) = waiting.pop_front() {
            note_pending(
                &self.metrics,
                windows,
                std::iter::once(&batch).chain(waiting.iter()),
            );
            self.write(batch, stop).await?;
        }
        note_pending(&self.metrics, windows, std::iter::empty());
        Ok(())
    }
}

/// Sets the pending-record gauges from the open windows and the cut batches
/// not yet committed.
pub(super) fn note_pending<'b>(
    metrics: &BackupMetrics,
    windows: &Windows,
    waiting: impl Iterator<Item = &'b Batch> + Clone,
) {
    let records = windows.buffered() + waiting.clone().map(|b| b.stats.records).sum::<u64>();
    metrics
        .pending
        .set(i64::try_from(records).unwrap_or(i64::MAX));
    let oldest = windows
        .oldest_ms()
        .into_iter()
        .chain(waiting.map(|b| b.oldest_ms))
        .min();
    metrics.set_oldest_pending(oldest);
}
