//! Pingora's own log lines: client faults become counters, the rest is
//! rate-limited.
//!
//! Pingora logs through the `log` crate; its records reach `tracing` as
//! events whose normalised target starts with `pingora`. [`PingoraGate`] is
//! a `tracing` layer that drops those of them that report a per-connection
//! client fault (a failed handshake, a client that went away) after counting
//! them in `edge_client_faults_total{kind}`, and lets through at most
//! [`LINES_PER_WINDOW`] other Pingora lines per [`WINDOW`]. Every dropped
//! line is counted in `edge_log_lines_suppressed_total{reason}`. The edge's
//! own log lines are not touched.

use std::fmt;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};

use super::faults::{FaultKind, count_fault};
use crate::metrics::METRICS;

/// Length of the rate-limit window for Pingora lines.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Pingora lines let through per window.
pub(crate) const LINES_PER_WINDOW: u32 = 10;

/// The layer; add it to the subscriber before the formatting layer.
pub(crate) struct PingoraGate {
    window: Mutex<(Instant, u32)>,
}

impl Default for PingoraGate {
    fn default() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

/// What to do with one Pingora line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A client fault: count it, drop the line.
    Fault(FaultKind),
    /// The echo of a fault already counted where it happened: drop the line.
    Echo,
    /// Out of fd or similar: count it, and log within the rate limit.
    CountAndLog(FaultKind),
    /// Anything else: log within the rate limit.
    Log,
}

/// Classifies a Pingora message by how it starts (Pingora 0.9's texts).
fn classify(message: &str) -> Verdict {
    const FAULTS: &[(&str, FaultKind)] = &[
        ("H2 handshake error", FaultKind::H2Handshake),
        ("Downstream handshake error", FaultKind::Handshake),
        ("Downstream handshake timeout", FaultKind::Handshake),
    ];
    if let Some((_, kind)) = FAULTS.iter().find(|(p, _)| message.starts_with(p)) {
        return Verdict::Fault(*kind);
    }
    // Pingora's error answer to a client already gone; the error that sent it
    // there was counted by `suppress_error_log`.
    if message.starts_with("failed to send error response to downstream") {
        return Verdict::Echo;
    }
    // A request head that could not be read (the client went away).
    if message.starts_with("Fail to proxy") && message.contains("downstream session type") {
        return Verdict::Fault(FaultKind::Reset);
    }
    if message.starts_with("Accept() failed") {
        return Verdict::CountAndLog(FaultKind::AcceptError);
    }
    Verdict::Log
}

impl PingoraGate {
    /// Whether one more line fits in the current window.
    fn admit_line(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        if w.1 < LINES_PER_WINDOW {
            w.1 += 1;
            true
        } else {
            false
        }
    }

    fn judge(&self, message: &str, now: Instant) -> bool {
        let suppressed = |reason: &str| {
            METRICS
                .connections
                .log_lines_suppressed
                .with_label_values(&[reason])
                .inc();
            false
        };
        match classify(message) {
            Verdict::Fault(kind) => {
                count_fault(kind);
                suppressed("client_fault")
            }
            Verdict::Echo => suppressed("client_fault"),
            Verdict::CountAndLog(kind) => {
                count_fault(kind);
                self.admit_line(now) || suppressed("rate_limited")
            }
            Verdict::Log => self.admit_line(now) || suppressed("rate_limited"),
        }
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for PingoraGate {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let from_pingora = match event.normalized_metadata() {
            Some(meta) => meta.target().starts_with("pingora"),
            None => event.metadata().target().starts_with("pingora"),
        };
        if !from_pingora {
            return true;
        }
        let mut message = Message::default();
        event.record(&mut message);
        self.judge(&message.0, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_are_dropped_and_the_rest_rate_limited() {
        assert_eq!(
            classify("H2 handshake error while h2 handshaking"),
            Verdict::Fault(FaultKind::H2Handshake)
        );
        assert_eq!(
            classify("Downstream handshake error from 192.0.2.1:5: x"),
            Verdict::Fault(FaultKind::Handshake)
        );
        assert_eq!(
            classify(
                "Fail to proxy: Downstream ConnectionClosed, downstream session type: HTTP/1.1"
            ),
            Verdict::Fault(FaultKind::Reset)
        );
        assert_eq!(
            classify("Accept() failed Too many open files"),
            Verdict::CountAndLog(FaultKind::AcceptError)
        );
        assert_eq!(classify("Fail to filter request: oops"), Verdict::Log);
        assert_eq!(
            classify("failed to send error response to downstream: Broken pipe"),
            Verdict::Echo
        );

        let gate = PingoraGate::default();
        let t0 = Instant::now();
        assert!(!gate.judge("H2 handshake error x", t0));
        let passed = (0..30).filter(|_| gate.judge("something else", t0)).count();
        assert_eq!(passed, LINES_PER_WINDOW as usize);
        assert!(gate.judge("something else", t0 + WINDOW));
    }
}
