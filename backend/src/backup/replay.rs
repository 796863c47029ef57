//! `edge-backend replay`: re-publishes backed-up records to Kafka unchanged
//! (key, value, headers) with an idempotent `acks=all` producer, so the
//! aggregation consumer can rebuild from them.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tracing::info;

use super::catalog;
use super::frame::BackupRecord;
use super::manifest::Manifest;
use super::store::{BackupStore, StoreConfig};

/// What to replay and where to.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// `bootstrap.servers` of the target cluster.
    pub brokers: String,
    /// Extra librdkafka properties (TLS, SASL…).
    pub properties: Vec<(String, String)>,
    /// Topic whose backup is read.
    pub source_topic: String,
    /// Topic to publish to.
    pub target_topic: String,
    /// Whether publishing into the source topic itself is intended (the
    /// live topic: every consumer reads the records again).
    pub into_source_topic: bool,
    /// Only records with a Kafka timestamp ≥ this (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Only records with a Kafka timestamp < this (ms since the epoch).
    pub to_ms: Option<i64>,
    /// Only records of this site (message key).
    pub site: Option<String>,
    /// Where the backup is.
    pub store: StoreConfig,
}

/// Counts of one replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Objects read (their time range overlapped the request).
    pub objects: u64,
    /// Records published and acknowledged.
    pub published: u64,
    /// Records in those objects outside the time range or of another site.
    pub skipped: u64,
}

/// Whether a record passes the time and site filters.
pub fn selected(
    r: &BackupRecord,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    site: Option<&str>,
) -> bool {
    if let Some(site) = site
        && r.key.as_deref() != Some(site.as_bytes())
    {
        return false;
    }
    if from_ms.is_none() && to_ms.is_none() {
        return true;
    }
    let Some(t) = r.timestamp.millis() else {
        return false;
    };
    from_ms.is_none_or(|f| t >= f) && to_ms.is_none_or(|to| t < to)
}

/// Whether an object may hold selected records.
pub fn overlaps(
    m: &Manifest,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    site: Option<&str>,
) -> bool {
    if site.is_some_and(|s| !m.sites.contains_key(s)) {
        return false;
    }
    if from_ms.is_none() && to_ms.is_none() {
        return true;
    }
    match (m.min_timestamp_ms, m.max_timestamp_ms) {
        (Some(lo), Some(hi)) => from_ms.is_none_or(|f| hi >= f) && to_ms.is_none_or(|t| lo < t),
        _ => false,
    }
}

/// Refuses an empty target topic, and the source (live) topic unless
/// `into_source_topic` says it is intended.
pub fn check_target(opts: &ReplayOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        !opts.target_topic.is_empty(),
        "--topic must name the topic to publish to"
    );
    anyhow::ensure!(
        opts.target_topic != opts.source_topic || opts.into_source_topic,
        "refusing to replay into {:?}, the backed-up (live) topic: its consumers (aggregators, \
         the backup) would read every replayed record again. Replay into a restore topic \
         (--topic edge.events.restore, see docs/backup.md), or add --yes to publish \
         into {:?} on purpose",
        opts.target_topic,
        opts.source_topic
    );
    Ok(())
}

/// Replays the selected records, partition by partition in offset order.
/// Refuses to start if any selected object fails its manifest check.
pub async fn run(opts: ReplayOptions) -> anyhow::Result<ReplaySummary> {
    if let (Some(f), Some(t)) = (opts.from_ms, opts.to_ms) {
        anyhow::ensure!(f < t, "--from must be before --to");
    }
    check_target(&opts)?;
    let store = BackupStore::open(&opts.store)?;
    let target = opts.target_topic.clone();
    let cat = catalog::load(&store, Some(&opts.source_topic)).await?;
    let mut manifests = Vec::new();
    for (key, parsed) in cat.manifests {
        let m = parsed.map_err(|e| anyhow::anyhow!("{key}: {e} (run `edge-backend verify`)"))?;
        if m.topic == opts.source_topic
            && overlaps(&m, opts.from_ms, opts.to_ms, opts.site.as_deref())
        {
            manifests.push(m);
        }
    }
    manifests.sort_by_key(|m| (m.partition, m.first_offset));
    info!(objects = manifests.len(), from = %opts.source_topic, to = %target, "replay: starting");

    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in &opts.properties {
        cc.set(k, v);
    }
    let producer: FutureProducer = cc.create().context("creating the replay producer")?;

    let mut summary = ReplaySummary::default();
    let mut in_flight = VecDeque::new();
    const MAX_IN_FLIGHT: usize = 10_000;
    for m in &manifests {
        let bytes = store.get(&m.object).await?;
        let records = m.check_object(&bytes).map_err(|problems| {
            anyhow::anyhow!(
                "{}: {} (run `edge-backend verify`; nothing after this object was replayed)",
                m.object,
                problems.join("; ")
            )
        })?;
        summary.objects += 1;
        for r in records {
            if !selected(&r, opts.from_ms, opts.to_ms, opts.site.as_deref()) {
                summary.skipped += 1;
                continue;
            }
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for h in &r.headers {
                headers = headers.insert(KafkaHeader {
                    key: &h.name,
                    value: h.value.as_deref(),
                });
            }
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target);
            if let Some(k) = r.key.as_deref() {
                fr = fr.key(k);
            }
            if let Some(v) = r.value.as_deref() {
                fr = fr.payload(v);
            }
            if !r.headers.is_empty() {
                fr = fr.headers(headers);
            }
            let delivery = producer
                .send_result(fr)
                .map_err(|(e, _)| e)
                .with_context(|| {
                    format!("enqueueing {}/{} offset {}", r.topic, r.partition, r.offset)
                })?;
            in_flight.push_back((r.partition, r.offset, delivery));
            if in_flight.len() >= MAX_IN_FLIGHT {
                summary.published += await_deliveries(&mut in_flight, MAX_IN_FLIGHT / 2).await?;
            }
        }
    }
    summary.published += await_deliveries(&mut in_flight, 0).await?;
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the replay producer")?;
    info!(
        published = summary.published,
        objects = summary.objects,
        "replay: done"
    );
    Ok(summary)
}

type InFlight = VecDeque<(i32, i64, rdkafka::producer::DeliveryFuture)>;

async fn await_deliveries(in_flight: &mut InFlight, keep: usize) -> anyhow::Result<u64> {
    let mut n = 0;
    while in_flight.len() > keep {
        let Some((partition, offset, fut)) = in_flight.pop_front() else {
            break;
        };
        match fut.await {
            Ok(Ok(_)) => n += 1,
            Ok(Err((e, _))) => {
                return Err(e).with_context(|| {
                    format!("publishing the record from partition {partition} offset {offset}")
                });
            }
            Err(_) => anyhow::bail!(
                "publishing the record from partition {partition} offset {offset}: producer dropped"
            ),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::test_support::record;

    #[test]
    fn the_live_topic_needs_an_explicit_yes() {
        let mut opts = ReplayOptions {
            brokers: "127.0.0.1:1".into(),
            properties: Vec::new(),
            source_topic: "edge.events".into(),
            target_topic: "edge.events".into(),
            into_source_topic: false,
            from_ms: None,
            to_ms: None,
            site: None,
            store: StoreConfig::Local {
                data_dir: "data".into(),
            },
        };
        let e = check_target(&opts).unwrap_err().to_string();
        assert!(
            e.contains("refusing to replay into \"edge.events\"") && e.contains("--yes"),
            "{e}"
        );
        opts.into_source_topic = true;
        check_target(&opts).unwrap();
        opts.target_topic = "edge.events.restore".into();
        opts.into_source_topic = false;
        check_target(&opts).unwrap();
        opts.target_topic = String::new();
        assert!(check_target(&opts).is_err());
    }

    #[test]
    fn filters_by_half_open_time_range_and_site() {
        let r = record(0, 0, 1_000, "site-a");
        assert!(selected(&r, None, None, None));
        assert!(selected(&r, Some(1_000), Some(1_001), Some("site-a")));
        assert!(!selected(&r, Some(1_001), None, None));
        assert!(!selected(&r, None, Some(1_000), None));
        assert!(!selected(&r, None, None, Some("site-b")));
        let mut none = r.clone();
        none.timestamp = crate::backup::frame::Timestamp::None;
        assert!(selected(&none, None, None, None));
        assert!(!selected(&none, Some(0), None, None));
    }
}
