//! Health of the Kafka producer: librdkafka's error callback, which errors
//! are fatal (the producer must be replaced), the broker's last error, and
//! the backoff between producer rebuilds.
//!
//! librdkafka reports client-wide errors (broker down, TLS handshake or SASL
//! failures, fatal idempotence errors) through the error callback of the
//! client's context. [`ProducerContext`] counts them by kind, keeps the last
//! one for `/readyz` and logs each kind at most once a minute,
//! so a broker that stays unreachable does not flood the log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ThreadedProducer;

use crate::kafka_batch::DeliverySlot;

use crate::metrics::delivery_events::ClientError;
pub(crate) use crate::metrics::delivery_events::{ErrorKind, RebuildReason};

/// The producer type the edge uses: a [`ThreadedProducer`] (its own thread
/// runs the delivery callbacks) whose context watches librdkafka's errors and
/// files each record's outcome in its [`crate::kafka_batch::DeliveryBatch`].
pub(crate) type EdgeProducer = ThreadedProducer<ProducerContext>;

/// Whether an error means the broker refuses this client's settings (TLS,
/// certificates, credentials, permissions) rather than being down or slow.
fn is_refusal(kind: ErrorKind, text: &str) -> bool {
    if matches!(
        kind,
        ErrorKind::Tls | ErrorKind::Authentication | ErrorKind::Authorization
    ) {
        return true;
    }
    let text = text.to_ascii_lowercase();
    ["ssl", "certificate", "sasl", "authentication"]
        .iter()
        .any(|needle| text.contains(needle))
}

/// An error kind is logged at most once in this time.
const RELOG_AFTER: Duration = Duration::from_secs(60);

/// The broker's last error, shared by every producer generation.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    last: Mutex<Option<LastError>>,
    /// When each kind was last logged, by [`ErrorKind::index`].
    logged: Mutex<[Option<Instant>; ErrorKind::COUNT]>,
    /// When a librdkafka `FAIL` line was last logged.
    fail_logged: Mutex<Option<Instant>>,
    /// Set by the error callback when librdkafka raised a fatal error.
    fatal_seen: AtomicBool,
    /// The last error in which the broker refused this client's TLS or
    /// credentials (kept although later errors, such as all brokers down,
    /// replace `last`).
    refusal: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
struct LastError {
    kind: ErrorKind,
    text: String,
    at: SystemTime,
}

impl ErrorLog {
    /// Records an error: counted by kind, kept as the last error, logged
    /// once per kind a minute ([`ClientError`]).
    pub(crate) fn record(&self, kind: ErrorKind, text: &str) {
        let now = SystemTime::now();
        if is_refusal(kind, text)
            && let Ok(mut refusal) = self.refusal.lock()
        {
            *refusal = Some(format!("{}: {text}", kind.as_label()));
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(LastError {
                kind,
                text: text.to_string(),
                at: now,
            });
        }
        let log = match self.logged.lock() {
            Ok(mut logged) => {
                let slot = &mut logged[kind.index()];
                let fresh = slot.is_none_or(|at| at.elapsed() >= RELOG_AFTER);
                if fresh {
                    *slot = Some(Instant::now());
                }
                fresh
            }
            Err(_) => false,
        };
        ClientError {
            kind,
            text,
            at: now,
            log,
        }
        .emit();
    }

    /// The last error as `KIND: TEXT`, without secrets (librdkafka's own
    /// message: broker address, error, never credentials).
    pub(crate) fn last(&self) -> Option<String> {
        let last = self.last.lock().ok()?.clone()?;
        Some(format!("{}: {}", last.kind.as_label(), last.text))
    }

    /// The last error in which the broker refused this client's TLS or
    /// credentials, if there was one.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok()?.clone()
    }

    /// When the last error happened.
    pub(crate) fn last_at(&self) -> Option<SystemTime> {
        self.last.lock().ok()?.as_ref().map(|l| l.at)
    }

    /// Whether a librdkafka connection-failure line may be logged now (at
    /// most one a minute).
    fn fail_line_due(&self) -> bool {
        let Ok(mut last) = self.fail_logged.lock() else {
            return false;
        };
        let due = last.is_none_or(|at| at.elapsed() >= RELOG_AFTER);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Whether the error callback reported a fatal error since the last call.
    pub(crate) fn take_fatal_seen(&self) -> bool {
        self.fatal_seen.swap(false, Ordering::AcqRel)
    }
}

/// The librdkafka client context of the edge's producer.
pub(crate) struct ProducerContext {
    errors: std::sync::Arc<ErrorLog>,
}

impl ProducerContext {
    /// A context reporting into `errors`.
    pub(crate) fn new(errors: std::sync::Arc<ErrorLog>) -> Self {
        Self { errors }
    }
}

impl ClientContext for ProducerContext {
    /// librdkafka's own log lines. Connection failures (facility `FAIL`)
    /// repeat at every reconnect: one a minute is logged as a warning (it
    /// names the broker and the cause, e.g. a disconnect during SASL), the
    /// rest go to debug; [`Self::error`] counts them.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            _ if fac == "FAIL" => {
                if self.errors.fail_line_due() {
                    tracing::warn!(target: "librdkafka", "librdkafka: {fac} {log_message}");
                } else {
                    tracing::debug!(target: "librdkafka", "librdkafka: {fac} {log_message}");
                }
            }
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {log_message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {log_message}");
            }
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = error
            .rdkafka_error_code()
            .map_or(ErrorKind::Other, ErrorKind::of);
        if kind == ErrorKind::Fatal {
            self.errors.fatal_seen.store(true, Ordering::Release);
        }
        self.errors.record(kind, reason);
    }
}

impl rdkafka::producer::ProducerContext for ProducerContext {
    type DeliveryOpaque = Box<DeliverySlot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<DeliverySlot>) {
        slot.settle(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// Exponential backoff between producer rebuilds: none before the first,
/// then 1 s, 2 s, 4 s … up to a minute while rebuilds keep failing.
#[derive(Debug)]
pub(crate) struct RebuildBackoff {
    next_allowed: Option<Instant>,
    consecutive: u32,
}

impl RebuildBackoff {
    /// Longest wait between two rebuilds.
    pub(crate) const MAX: Duration = Duration::from_secs(60);

    /// A backoff that allows a rebuild now.
    pub(crate) fn new() -> Self {
        Self {
            next_allowed: None,
            consecutive: 0,
        }
    }

    /// Whether a rebuild may happen at `now`.
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.next_allowed.is_none_or(|t| now >= t)
    }

    /// Notes a rebuild at `now`; returns the wait before the next one.
    pub(crate) fn note_rebuild(&mut self, now: Instant) -> Duration {
        let wait = Duration::from_secs(1u64 << self.consecutive.min(6)).min(Self::MAX);
        self.consecutive = self.consecutive.saturating_add(1);
        self.next_allowed = Some(now + wait);
        wait
    }

    /// Notes that the current producer delivered: the next rebuild waits 1 s again.
    pub(crate) fn note_healthy(&mut self) {
        self.consecutive = 0;
    }
}

impl Default for RebuildBackoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rdkafka::error::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn fatal_codes_rebuild_and_others_do_not() {
        use RDKafkaErrorCode as C;
        assert_eq!(
            RebuildReason::of(C::ProducerFenced),
            Some(RebuildReason::ProducerFenced)
        );
        assert_eq!(
            RebuildReason::of(C::OutOfOrderSequenceNumber),
            Some(RebuildReason::OutOfOrderSequence)
        );
        assert_eq!(RebuildReason::of(C::Fatal), Some(RebuildReason::Fatal));
        for c in [C::AllBrokersDown, C::SSL, C::MessageTimedOut, C::QueueFull] {
            assert_eq!(RebuildReason::of(c), None, "{c:?}");
        }
        assert_eq!(ErrorKind::of(C::ProducerFenced), ErrorKind::Fatal);
        assert_eq!(ErrorKind::of(C::SSL), ErrorKind::Tls);
        assert_eq!(
            ErrorKind::of(C::SaslAuthenticationFailed),
            ErrorKind::Authentication
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute_and_resets_when_healthy() {
        let mut b = RebuildBackoff::new();
        let t0 = Instant::now();
        assert!(b.allows(t0));
        let waits: Vec<u64> = (0..9).map(|_| b.note_rebuild(t0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!b.allows(t0 + Duration::from_secs(59)));
        assert!(b.allows(t0 + Duration::from_secs(60)));
        b.note_healthy();
        assert_eq!(b.note_rebuild(t0).as_secs(), 1);
    }

    #[test]
    fn last_error_is_kept_with_its_kind_and_fatal_is_flagged_once() {
        let log = std::sync::Arc::new(ErrorLog::default());
        assert_eq!(log.last(), None);
        let ctx = ProducerContext::new(log.clone());
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:1/bootstrap: SSL handshake failed",
        );
        assert_eq!(
            log.last().unwrap(),
            "tls: ssl://127.0.0.1:1/bootstrap: SSL handshake failed"
        );
        assert!(log.last_at().is_some());
        assert!(!log.take_fatal_seen());
        ctx.error(KafkaError::Global(RDKafkaErrorCode::Fatal), "fenced");
        assert!(log.take_fatal_seen());
        assert!(!log.take_fatal_seen());
    }
}
