//! `GET /admin/spool` and the readiness verdict: what the durable spool holds
//! and whether the edge is accepting and durably keeping events.
//!
//! Readiness depends on the spool, plus one broker condition: with the spool
//! in place a slow or absent broker no longer changes the answer browsers
//! get, so a broker outage does not make the edge unready. A broker that
//! refused this edge's TLS or credentials since start (wrong CA, client
//! certificate or password) does, so a misconfigured edge is not put into
//! rotation. The broker's current state stays visible here and in
//! `edge_kafka_ready`.

use edge_spool::{FullReason, Spool};

use crate::kafka::KafkaSink;
use crate::shipper::SpoolState;
use crate::state::EdgeState;
use edge_certs::clock::unix_millis;

/// Why the edge is not ready, or `None` when it accepts and durably keeps events.
pub(crate) fn not_ready_reason(state: &EdgeState) -> Option<String> {
    if !state.acme.stored_certificates_loaded() {
        return Some("not ready: stored ACME certificates are still loading".into());
    }
    if let Some(error) = state.sink.refused_by_broker() {
        return Some(format!(
            "not ready: the Kafka broker refuses this edge's connection settings ({error})"
        ));
    }
    spool_not_ready_reason(&state.spool.spool)
}

/// The spool's part of [`not_ready_reason`].
fn spool_not_ready_reason(spool: &Spool) -> Option<String> {
    let stats = spool.stats();
    if !stats.writable {
        return Some(format!(
            "not ready: the spool in {} is not writable",
            spool.dir().display()
        ));
    }
    match stats.full {
        Some(FullReason::MaxBytes) => Some("not ready: the spool is full (spool.max_bytes)".into()),
        Some(FullReason::DiskSpace) => {
            Some("not ready: the spool's disk is below spool.min_free_disk_bytes".into())
        }
        None => None,
    }
}

/// The JSON body of `GET /admin/spool`.
pub(crate) fn status(state: &EdgeState) -> serde_json::Value {
    spool_status(&state.spool, &state.sink)
}

/// [`status`] of a spool and the sink its shipper delivers through.
fn spool_status(spool: &SpoolState, sink: &KafkaSink) -> serde_json::Value {
    let stats = spool.spool.stats();
    let oldest_age_seconds = stats
        .oldest_unacked_ms
        .map_or(0.0, |t| ((unix_millis() - t).max(0) as f64) / 1000.0);
    let full = stats.full.map(|f| match f {
        FullReason::MaxBytes => "max_bytes",
        FullReason::DiskSpace => "min_free_disk_bytes",
    });
    serde_json::json!({
        "dir": spool.spool.dir().display().to_string(),
        "bytes": stats.bytes,
        "records": stats.records,
        "segments": stats.segments,
        "oldest_record_age_seconds": oldest_age_seconds,
        "acked_seq": stats.acked_seq,
        "checkpointed_seq": stats.checkpointed_seq,
        "writable": stats.writable,
        "full": full,
        "corrupt_skipped": stats.corrupt_skipped,
        "torn_bytes_truncated": stats.torn_bytes_truncated,
        "prefill_failures": stats.prefill_failures,
        "checkpoint_failures": stats.checkpoint_failures,
        "commit_delay_us": u64::try_from(stats.commit_delay.delay.as_micros()).unwrap_or(u64::MAX),
        "commit_delay_min_appends": stats.commit_delay.min_appends,
        "broker": {
            "ready": sink.is_ready(),
            "topic": sink.topic(),
            "last_error": spool.last_error(),
        },
    })
}

#[cfg(test)]
mod tests {
    use edge_spool::{AppendError, RecordRef};

    use super::*;

    fn spool(dir: &std::path::Path) -> SpoolState {
        SpoolState::open(&edge_config::Spool::default(), dir).unwrap()
    }

    /// Appends one-record requests until the spool refuses one; returns how
    /// many it took and the refusal.
    async fn fill(spool: &Spool) -> (u64, AppendError) {
        let payload = [7u8; 512];
        let r = RecordRef {
            key: b"site",
            header: None,
            payload: &payload,
        };
        for taken in 0..10_000 {
            if let Err(e) = spool.append(&[r]).await {
                return (taken, e);
            }
        }
        panic!("the spool never refused");
    }

    #[tokio::test]
    async fn a_spool_at_its_byte_bound_is_not_ready_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let state = spool(dir.path());
        let sink = crate::test_kafka::sink("127.0.0.1:1", |_| {});
        assert_eq!(spool_not_ready_reason(&state.spool), None);
        let body = spool_status(&state, &sink);
        assert_eq!(body["records"], 0);
        assert_eq!(body["full"], serde_json::Value::Null);
        assert_eq!(body["writable"], true);
        assert_eq!(body["broker"]["ready"], false, "never probed");
        assert_eq!(body["broker"]["topic"], crate::test_kafka::TOPIC);

        state.spool.set_limits(8 * 1024, 0);
        let (taken, refusal) = fill(&state.spool).await;
        assert!(
            matches!(refusal, AppendError::Full(FullReason::MaxBytes)),
            "{refusal:?}"
        );
        assert!(taken > 0);
        assert_eq!(
            spool_not_ready_reason(&state.spool).as_deref(),
            Some("not ready: the spool is full (spool.max_bytes)")
        );
        let body = spool_status(&state, &sink);
        assert_eq!(body["records"], taken);
        assert_eq!(body["full"], "max_bytes");
        assert_eq!(body["acked_seq"], 0);

        // A delivery failure the shipper saw is reported with the broker.
        state.set_last_error("kafka delivery failed: test".into());
        let body = spool_status(&state, &sink);
        assert_eq!(
            body["broker"]["last_error"]["error"],
            "kafka delivery failed: test"
        );

        // Room again: ready.
        state.spool.set_limits(1 << 30, 0);
        assert_eq!(spool_not_ready_reason(&state.spool), None);
    }

    #[tokio::test]
    async fn a_disk_below_its_free_space_floor_and_a_closed_spool_are_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let state = spool(dir.path());
        state.spool.set_limits(1 << 30, u64::MAX);
        let (taken, refusal) = fill(&state.spool).await;
        assert_eq!(taken, 0);
        assert!(
            matches!(refusal, AppendError::Full(FullReason::DiskSpace)),
            "{refusal:?}"
        );
        assert_eq!(
            spool_not_ready_reason(&state.spool).as_deref(),
            Some("not ready: the spool's disk is below spool.min_free_disk_bytes")
        );
        let sink = crate::test_kafka::sink("127.0.0.1:1", |_| {});
        assert_eq!(spool_status(&state, &sink)["full"], "min_free_disk_bytes");
        state.spool.close();
        let reason = spool_not_ready_reason(&state.spool).unwrap();
        assert!(reason.contains("is not writable"), "{reason}");
        assert!(
            reason.contains(&dir.path().display().to_string()),
            "{reason}"
        );
    }
}
