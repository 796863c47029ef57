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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

use crate::metrics::METRICS;

/// The producer type the edge uses: a [`FutureProducer`] whose context
/// watches librdkafka's errors.
pub type EdgeProducer = FutureProducer<ProducerContext>;

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

/// Kinds of client errors, the `kind` label of `edge_kafka_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No broker connection is up.
    AllBrokersDown,
    /// A connection failed or broke (refused, reset, timed out).
    Transport,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// SASL authentication failed.
    Authentication,
    /// The broker refused an operation for lack of permission.
    Authorization,
    /// A fatal error: the producer cannot continue and is replaced.
    Fatal,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Classifies a librdkafka error code.
    pub fn of(code: RDKafkaErrorCode) -> ErrorKind {
        use RDKafkaErrorCode as C;
        match code {
            C::AllBrokersDown => ErrorKind::AllBrokersDown,
            C::BrokerTransportFailure
            | C::Resolve
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::MessageTimedOut => ErrorKind::Transport,
            C::SSL => ErrorKind::Tls,
            C::Authentication | C::SaslAuthenticationFailed => ErrorKind::Authentication,
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed => ErrorKind::Authorization,
            c if RebuildReason::of(c).is_some() => ErrorKind::Fatal,
            _ => ErrorKind::Other,
        }
    }

    /// How many kinds there are.
    pub const COUNT: usize = 7;

    /// A distinct index below [`ErrorKind::COUNT`].
    pub fn index(self) -> usize {
        match self {
            ErrorKind::AllBrokersDown => 0,
            ErrorKind::Transport => 1,
            ErrorKind::Tls => 2,
            ErrorKind::Authentication => 3,
            ErrorKind::Authorization => 4,
            ErrorKind::Fatal => 5,
            ErrorKind::Other => 6,
        }
    }

    /// The metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            ErrorKind::AllBrokersDown => "all_brokers_down",
            ErrorKind::Transport => "transport",
            ErrorKind::Tls => "tls",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Authorization => "authorization",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Other => "other",
        }
    }
}

/// Why a producer was replaced, the `reason` label of
/// `edge_kafka_producer_rebuilds_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildReason {
    /// The broker fenced the idempotent producer (`ProducerFenced`, `InvalidProducerEpoch`).
    ProducerFenced,
    /// The broker saw a sequence gap (`OutOfOrderSequenceNumber`).
    OutOfOrderSequence,
    /// Any other error librdkafka raised as fatal.
    Fatal,
}

impl RebuildReason {
    /// The reason when `code` means the producer cannot continue, else `None`.
    pub fn of(code: RDKafkaErrorCode) -> Option<RebuildReason> {
        use RDKafkaErrorCode as C;
        match code {
            C::ProducerFenced | C::InvalidProducerEpoch => Some(RebuildReason::ProducerFenced),
            C::OutOfOrderSequenceNumber => Some(RebuildReason::OutOfOrderSequence),
            C::Fatal => Some(RebuildReason::Fatal),
            _ => None,
        }
    }

    /// The metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            RebuildReason::ProducerFenced => "producer_fenced",
            RebuildReason::OutOfOrderSequence => "out_of_order_sequence",
            RebuildReason::Fatal => "fatal",
        }
    }
}

/// An error kind is logged at most once in this time.
const RELOG_AFTER: Duration = Duration::from_secs(60);

/// The broker's last error, shared by every producer generation.
#[derive(Debug, Default)]
pub struct ErrorLog {
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
    /// Records an error: counted by kind, kept as the last error, logged once per kind.
    pub fn record(&self, kind: ErrorKind, text: &str) {
        METRICS
            .kafka_health
            .client_errors
            .with_label_values(&[kind.as_label()])
            .inc();
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        METRICS.kafka_health.last_error_timestamp.set(secs);
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
        let first = match self.logged.lock() {
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
        if first {
            tracing::warn!(kind = kind.as_label(), error = %text, "kafka client error");
        }
    }

    /// The last error as `KIND: TEXT`, without secrets (librdkafka's own
    /// message: broker address, error, never credentials).
    pub fn last(&self) -> Option<String> {
        let last = self.last.lock().ok()?.clone()?;
        Some(format!("{}: {}", last.kind.as_label(), last.text))
    }

    /// The last error in which the broker refused this client's TLS or
    /// credentials, if there was one.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok()?.clone()
    }

    /// When the last error happened.
    pub fn last_at(&self) -> Option<SystemTime> {
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
    pub fn take_fatal_seen(&self) -> bool {
        self.fatal_seen.swap(false, Ordering::AcqRel)
    }
}

/// The librdkafka client context of the edge's producer.
pub struct ProducerContext {
    errors: std::sync::Arc<ErrorLog>,
}

impl ProducerContext {
    /// A context reporting into `errors`.
    pub fn new(errors: std::sync::Arc<ErrorLog>) -> Self {
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

/// Exponential backoff between producer rebuilds: none before the first,
/// then 1 s, 2 s, 4 s … up to a minute while rebuilds keep failing.
#[derive(Debug)]
pub struct RebuildBackoff {
    next_allowed: Option<Instant>,
    consecutive: u32,
}

impl RebuildBackoff {
    /// Longest wait between two rebuilds.
    pub const MAX: Duration = Duration::from_secs(60);

    /// A backoff that allows a rebuild now.
    pub fn new() -> Self {
        Self {
            next_allowed: None,
            consecutive: 0,
        }
    }

    /// Whether a rebuild may happen at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        self.next_allowed.is_none_or(|t| now >= t)
    }

    /// Notes a rebuild at `now`; returns the wait before the next one.
    pub fn note_rebuild(&mut self, now: Instant) -> Duration {
        let wait = Duration::from_secs(1u64 << self.consecutive.min(6)).min(Self::MAX);
        self.consecutive = self.consecutive.saturating_add(1);
        self.next_allowed = Some(now + wait);
        wait
    }

    /// Notes that the current producer delivered: the next rebuild waits 1 s again.
    pub fn note_healthy(&mut self) {
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
