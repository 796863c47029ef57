//! The transactional write of one batch: offsets (fenced), event-id dedupe,
//! rollups and dead-letter records, all in one transaction.
//!
//! Order inside the transaction: the offsets first (this takes the offset
//! rows' locks before anything else and refuses a batch another consumer
//! already applied), then the batch's event ids are looked up in `agg_seen`
//! and the events already counted are dropped, then the remaining events'
//! rollup is added and their ids recorded.

use std::collections::HashSet;

use edge_envelope::EventRecord;
use sqlx::{AssertSqlSafe, Row};

use super::{
    ApplyOutcome, CHUNK, Committed, OffsetAdvance, SqlContext as _, Store, StoreError, to_i64,
};
use crate::aggregate::rollup::{
    BucketKey, BucketSize, Rollup, SketchMerger, encode_sketch, sketch_of,
};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The id of an event that has none (records of version 1): never deduplicated.
pub const NO_EVENT_ID: [u8; 16] = [0; 16];

/// Where a dead-lettered record came from, and why (kept in
/// `agg_dead_letters` for `audit`; never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record key, if it is UTF-8.
    pub site: Option<String>,
    /// Kafka timestamp of the record, ms.
    pub timestamp_ms: i64,
    /// Fixed reason (as in the dead-letter header).
    pub reason: &'static str,
}

impl Store {
    /// Moves the offsets, drops events whose id was already counted, adds
    /// the rest to the rollups and records the dead letters, in one
    /// transaction; unless a partition's stored offset differs from
    /// `expected` (then nothing changes).
    pub async fn apply(
        &self,
        group: &str,
        offsets: &[OffsetAdvance],
        events: &[&EventRecord],
        letters: &[DeadLetterRow],
    ) -> Result<ApplyOutcome, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot begin transaction")?;
        let conflicts = move_offsets(&mut tx, group, offsets).await?;
        if !conflicts.is_empty() {
            tx.rollback().await.context("cannot roll back")?;
            return Ok(ApplyOutcome::Conflict(conflicts));
        }
        let fresh = unseen(&mut tx, events).await?;
        let duplicates = events.len() - fresh.len();
        let mut rollup = Rollup::default();
        for e in &fresh {
            rollup.add(e);
        }
        write_rollup(&mut tx, &rollup).await?;
        mark_seen(&mut tx, &fresh).await?;
        count_duplicates(&mut tx, events, &fresh).await?;
        insert_dead_letters(&mut tx, letters).await?;
        tx.commit().await.context("cannot commit batch")?;
        Ok(ApplyOutcome::Committed(Committed {
            events: rollup.events,
            duplicates: duplicates as u64,
        }))
    }

    /// Writes the rollup and event ids of `events` in a transaction that is
    /// then rolled back: `Err` says whether (and why) these events can be
    /// stored. Used to find the records a content error comes from.
    pub async fn probe(&self, events: &[&EventRecord]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot begin transaction")?;
        let mut rollup = Rollup::default();
        for e in events {
            rollup.add(e);
        }
        write_rollup(&mut tx, &rollup).await?;
        mark_seen(&mut tx, events).await?;
        tx.rollback().await.context("cannot roll back probe")?;
        Ok(())
    }

    /// Deletes remembered event ids received before `before_ms`; returns how many.
    pub async fn prune_seen(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM agg_seen WHERE received_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .context("cannot prune agg_seen")?
            .rows_affected())
    }
}

async fn move_offsets(
    tx: &mut Tx,
    group: &str,
    offsets: &[OffsetAdvance],
) -> Result<Vec<(String, i32)>, StoreError> {
    let mut conflicts = Vec::new();
    for adv in offsets {
        let done = match adv.expected {
            Some(expected) => sqlx::query(
                "UPDATE agg_offsets SET next_offset = $1 WHERE group_id = $2 AND topic = $3 AND partition_id = $4 AND next_offset = $5",
            )
            .bind(adv.next)
            .bind(group)
            .bind(adv.topic.as_str())
            .bind(i64::from(adv.partition))
            .bind(expected)
            .execute(&mut **tx)
            .await,
            None => sqlx::query(
                "INSERT INTO agg_offsets (group_id, topic, partition_id, next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition_id) DO NOTHING",
            )
            .bind(group)
            .bind(adv.topic.as_str())
            .bind(i64::from(adv.partition))
            .bind(adv.next)
            .execute(&mut **tx)
            .await,
        }
        .context("cannot store offset")?;
        if done.rows_affected() != 1 {
            conflicts.push((adv.topic.clone(), adv.partition));
        }
    }
    Ok(conflicts)
}

/// The events whose id is not in `agg_seen` yet, first occurrence only
/// (events without an id are all kept).
async fn unseen<'a>(
    tx: &mut Tx,
    events: &[&'a EventRecord],
) -> Result<Vec<&'a EventRecord>, StoreError> {
    let ids: Vec<String> = events
        .iter()
        .filter(|e| e.event_id != NO_EVENT_ID)
        .map(|e| hex::encode(e.event_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT event_id FROM agg_seen WHERE event_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for row in q
            .fetch_all(&mut **tx)
            .await
            .context("cannot look up seen event ids")?
        {
            seen.insert(row.try_get(0).context("cannot decode event id")?);
        }
    }
    let mut batch: HashSet<[u8; 16]> = HashSet::new();
    Ok(events
        .iter()
        .copied()
        .filter(|e| {
            e.event_id == NO_EVENT_ID
                || (!seen.contains(&hex::encode(e.event_id)) && batch.insert(e.event_id))
        })
        .collect())
}

async fn mark_seen(tx: &mut Tx, events: &[&EventRecord]) -> Result<(), StoreError> {
    let rows: Vec<(String, &str, i64)> = events
        .iter()
        .filter(|e| e.event_id != NO_EVENT_ID)
        .map(|e| {
            (
                hex::encode(e.event_id),
                e.site_id.as_str(),
                e.received_at_ms,
            )
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let mut sql = String::from("INSERT INTO agg_seen (event_id, site_id, received_at) VALUES ");
        for i in 0..chunk.len() {
            let n = 1 + i * 3;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${n}, ${}, ${})", n + 1, n + 2));
        }
        // Within a batch ids are unique (see `unseen`); DO NOTHING only
        // matters for a probe of records that repeat an id.
        sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, site, at) in chunk {
            q = q.bind(id.as_str()).bind(*site).bind(*at);
        }
        q.execute(&mut **tx)
            .await
            .context("cannot record seen event ids")?;
    }
    Ok(())
}

/// Adds the dropped duplicates to `agg_audit`, per site and hour.
async fn count_duplicates(
    tx: &mut Tx,
    events: &[&EventRecord],
    fresh: &[&EventRecord],
) -> Result<(), StoreError> {
    if events.len() == fresh.len() {
        return Ok(());
    }
    let mut per: std::collections::BTreeMap<(&str, i64), i64> = Default::default();
    for e in events {
        *per.entry((
            e.site_id.as_str(),
            BucketSize::Hour.start_of(e.received_at_ms),
        ))
        .or_default() += 1;
    }
    for e in fresh {
        *per.entry((
            e.site_id.as_str(),
            BucketSize::Hour.start_of(e.received_at_ms),
        ))
        .or_default() -= 1;
    }
    for ((site, start), n) in per.into_iter().filter(|(_, n)| *n > 0) {
        sqlx::query(
            "INSERT INTO agg_audit (site_id, bucket_start, duplicates) VALUES ($1, $2, $3) \
             ON CONFLICT (site_id, bucket_start) DO UPDATE SET duplicates = agg_audit.duplicates + excluded.duplicates",
        )
        .bind(site)
        .bind(start)
        .bind(n)
        .execute(&mut **tx)
        .await
        .context("cannot count duplicates")?;
    }
    Ok(())
}

async fn insert_dead_letters(tx: &mut Tx, letters: &[DeadLetterRow]) -> Result<(), StoreError> {
    for l in letters {
        sqlx::query(
            "INSERT INTO agg_dead_letters (topic, partition_id, record_offset, site_id, timestamp_ms, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (topic, partition_id, record_offset) DO NOTHING",
        )
        .bind(l.topic.as_str())
        .bind(i64::from(l.partition))
        .bind(l.offset)
        .bind(l.site.as_deref())
        .bind(l.timestamp_ms)
        .bind(l.reason)
        .execute(&mut **tx)
        .await
        .context("cannot record dead letter")?;
    }
    Ok(())
}

async fn write_rollup(tx: &mut Tx, rollup: &Rollup) -> Result<(), StoreError> {
    for (key, delta) in &rollup.buckets {
        let new_visitors = insert_visitors(tx, key, delta.visitors.iter()).await?;
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT visitors_hll FROM agg_buckets WHERE site_id = $1 AND bucket = $2 AND bucket_start = $3",
        )
        .bind(key.site.as_str())
        .bind(key.size.as_str())
        .bind(key.start_ms)
        .fetch_optional(&mut **tx)
        .await
        .context("cannot read bucket sketch")?;
        let mut merger = SketchMerger::default();
        if let Some(stored) = stored {
            merger
                .add_encoded(&stored)
                .map_err(|error| StoreError::Sketch {
                    bucket: format!("{} {} {}", key.site, key.size.as_str(), key.start_ms),
                    error,
                })?;
        }
        merger.add(&sketch_of(&delta.visitors));
        sqlx::query(
            "INSERT INTO agg_buckets (site_id, bucket, bucket_start, pageviews, custom_events, visitors, visitors_hll) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (site_id, bucket, bucket_start) DO UPDATE SET \
             pageviews = agg_buckets.pageviews + excluded.pageviews, \
             custom_events = agg_buckets.custom_events + excluded.custom_events, \
             visitors = agg_buckets.visitors + excluded.visitors, \
             visitors_hll = excluded.visitors_hll",
        )
        .bind(key.site.as_str())
        .bind(key.size.as_str())
        .bind(key.start_ms)
        .bind(to_i64(delta.pageviews))
        .bind(to_i64(delta.custom_events))
        .bind(to_i64(new_visitors))
        .bind(encode_sketch(&merger.sketch()))
        .execute(&mut **tx)
        .await
        .context("cannot upsert bucket")?;
        let dims: Vec<_> = delta.dims.iter().collect();
        for chunk in dims.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO agg_dimensions (site_id, bucket, bucket_start, dimension, value, count) VALUES ",
            );
            for i in 0..chunk.len() {
                let n = 4 + i * 3;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, $2, $3, ${n}, ${}, ${})", n + 1, n + 2));
            }
            sql.push_str(
                " ON CONFLICT (site_id, bucket, bucket_start, dimension, value) DO UPDATE SET count = agg_dimensions.count + excluded.count",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(key.site.as_str())
                .bind(key.size.as_str())
                .bind(key.start_ms);
            for ((dim, value), count) in chunk {
                q = q
                    .bind(dim.as_str())
                    .bind(value.as_str())
                    .bind(to_i64(**count));
            }
            q.execute(&mut **tx)
                .await
                .context("cannot upsert dimension counts")?;
        }
    }
    Ok(())
}

/// Inserts a bucket's visitor ids, ignoring known ones; returns how many were new.
async fn insert_visitors<'a>(
    tx: &mut Tx,
    key: &BucketKey,
    visitors: impl Iterator<Item = &'a [u8; 16]>,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = visitors.map(hex::encode).collect();
    let mut new = 0;
    for chunk in ids.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO agg_bucket_visitors (site_id, bucket, bucket_start, visitor_id) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, $2, $3, ${})", 4 + i));
        }
        sql.push_str(" ON CONFLICT (site_id, bucket, bucket_start, visitor_id) DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(key.site.as_str())
            .bind(key.size.as_str())
            .bind(key.start_ms);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        new += q
            .execute(&mut **tx)
            .await
            .context("cannot insert bucket visitors")?
            .rows_affected();
    }
    Ok(new)
}
