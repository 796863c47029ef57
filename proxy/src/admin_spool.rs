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

use edge_spool::FullReason;

use crate::state::EdgeState;
use edge_certs::clock::unix_millis;

/// Why the edge is not ready, or `None` when it accepts and durably keeps events.
pub fn not_ready_reason(state: &EdgeState) -> Option<String> {
    if !state.acme.stored_certificates_loaded() {
        return Some("not ready: stored ACME certificates are still loading".into());
    }
    if let Some(error) = state.sink.refused_by_broker() {
        return Some(format!(
            "not ready: the Kafka broker refuses this edge's connection settings ({error})"
        ));
    }
    let stats = state.spool.spool.stats();
    if !stats.writable {
        return Some(format!(
            "not ready: the spool in {} is not writable",
            state.spool.spool.dir().display()
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
pub fn status(state: &EdgeState) -> serde_json::Value {
    let stats = state.spool.spool.stats();
    let oldest_age_seconds = stats
        .oldest_unacked_ms
        .map_or(0.0, |t| ((unix_millis() - t).max(0) as f64) / 1000.0);
    let full = stats.full.map(|f| match f {
        FullReason::MaxBytes => "max_bytes",
        FullReason::DiskSpace => "min_free_disk_bytes",
    });
    serde_json::json!({
        "dir": state.spool.spool.dir().display().to_string(),
        "bytes": stats.bytes,
        "records": stats.records,
        "segments": stats.segments,
        "oldest_record_age_seconds": oldest_age_seconds,
        "acked_seq": stats.acked_seq,
        "writable": stats.writable,
        "full": full,
        "corrupt_skipped": stats.corrupt_skipped,
        "torn_bytes_truncated": stats.torn_bytes_truncated,
        "broker": {
            "ready": state.sink.is_ready(),
            "topic": state.sink.topic(),
            "last_error": state.spool.last_error(),
        },
    })
}
