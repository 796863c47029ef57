//! Result recording: counters, latency histograms (µs), per-second histograms, TLS handshakes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived with this status.
    Status(u16),
    /// The per-request timeout fired.
    Timeout,
    /// Connect, TLS or I/O failure.
    Error,
}

/// Which kind of TLS handshake a connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Full handshake.
    Full,
    /// Session resumption.
    Resumed,
}

/// Plain counters, cheap to copy for progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests started.
    pub sent: u64,
    /// Requests that got a response (any status).
    pub completed: u64,
    /// 2xx responses.
    pub s2xx: u64,
    /// 429 responses.
    pub s429: u64,
    /// Other 4xx responses.
    pub s4xx: u64,
    /// 5xx responses.
    pub s5xx: u64,
    /// 1xx/3xx responses.
    pub other: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Connect/TLS/I/O errors.
    pub errors: u64,
}

/// What happened in one second of the run (by the second a request finished).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondCounts {
    /// Responses of any status.
    pub completed: u64,
    /// 2xx responses.
    pub s2xx: u64,
    /// 429 responses.
    pub s429: u64,
    /// Other 4xx responses.
    pub s4xx: u64,
    /// 5xx responses.
    pub s5xx: u64,
    /// 1xx/3xx responses.
    pub other: u64,
    /// Connect/TLS/I/O errors and timeouts.
    pub errors: u64,
}

/// Most distinct error messages counted apart; later ones are counted together.
pub const MAX_ERROR_KINDS: usize = 50;
/// The key errors beyond [`MAX_ERROR_KINDS`] are counted under.
pub const OTHER_ERRORS: &str = "(other errors)";
/// The key timeouts are counted under.
pub const TIMEOUT_ERROR: &str = "timeout (--timeout-ms)";

/// Everything recorded during a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Counters.
    pub counters: Counters,
    /// Latency of completed requests, µs, measured from the intended send time.
    pub latency: Histogram<u64>,
    /// Latency histograms by second of intended send time.
    pub per_second: Vec<Histogram<u64>>,
    /// Full TLS handshake times, µs.
    pub tls_full: Histogram<u64>,
    /// Resumed TLS handshake times, µs.
    pub tls_resumed: Histogram<u64>,
    /// Time from run start to the last finished request.
    pub elapsed: Duration,
    /// Responses by status code.
    pub codes: BTreeMap<u16, u64>,
    /// Errors and timeouts by message (at most [`MAX_ERROR_KINDS`] keys
    /// plus [`OTHER_ERRORS`]).
    pub error_kinds: BTreeMap<String, u64>,
    /// Outcomes by the second (from run start) requests finished in.
    pub per_second_counts: Vec<SecondCounts>,
}

const MAX_US: u64 = 3_600_000_000;

fn hist(sigfig: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_US, sigfig) {
        Ok(h) => h,
        // Only reachable with invalid constant parameters: a programming error.
        Err(e) => panic!("hdrhistogram rejected constant parameters: {e}"),
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            counters: Counters::default(),
            latency: hist(3),
            per_second: Vec::new(),
            tls_full: hist(3),
            tls_resumed: hist(3),
            elapsed: Duration::ZERO,
            codes: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
            per_second_counts: Vec::new(),
        }
    }
}

impl Stats {
    /// Records a request start.
    pub fn record_sent(&mut self) {
        self.counters.sent += 1;
    }

    /// Records a finished request. `latency` is from the intended send time;
    /// `second` is the second (from run start) the request was meant to be sent in;
    /// `finished` is when it ended, relative to the run start.
    pub fn record(
        &mut self,
        outcome: Outcome,
        latency: Duration,
        second: usize,
        finished: Duration,
    ) {
        self.elapsed = self.elapsed.max(finished);
        let done_in = usize::try_from(finished.as_secs()).unwrap_or(usize::MAX);
        if self.per_second_counts.len() <= done_in {
            self.per_second_counts
                .resize_with(done_in + 1, SecondCounts::default);
        }
        let sec = &mut self.per_second_counts[done_in];
        let c = &mut self.counters;
        match outcome {
            Outcome::Timeout => {
                c.timeouts += 1;
                sec.errors += 1;
                *self
                    .error_kinds
                    .entry(TIMEOUT_ERROR.to_owned())
                    .or_default() += 1;
            }
            Outcome::Error => {
                c.errors += 1;
                sec.errors += 1;
            }
            Outcome::Status(code) => {
                c.completed += 1;
                sec.completed += 1;
                *self.codes.entry(code).or_default() += 1;
                match code {
                    200..=299 => {
                        c.s2xx += 1;
                        sec.s2xx += 1;
                    }
                    429 => {
                        c.s429 += 1;
                        sec.s429 += 1;
                    }
                    400..=499 => {
                        c.s4xx += 1;
                        sec.s4xx += 1;
                    }
                    500..=599 => {
                        c.s5xx += 1;
                        sec.s5xx += 1;
                    }
                    _ => {
                        c.other += 1;
                        sec.other += 1;
                    }
                }
                let us = duration_us(latency);
                self.latency.saturating_record(us);
                if self.per_second.len() <= second {
                    self.per_second.resize_with(second + 1, || hist(2));
                }
                self.per_second[second].saturating_record(us);
            }
        }
    }

    /// Counts one error by its message (call it along with recording
    /// [`Outcome::Error`]).
    pub fn note_error(&mut self, message: String) {
        let key = if self.error_kinds.contains_key(&message)
            || self.error_kinds.len() < MAX_ERROR_KINDS
        {
            message
        } else {
            OTHER_ERRORS.to_owned()
        };
        *self.error_kinds.entry(key).or_default() += 1;
    }

    /// Errors and timeouts by message, most frequent first (ties by message).
    pub fn errors_ranked(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .error_kinds
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Records the duration of one TLS handshake.
    pub fn record_handshake(&mut self, kind: HandshakeKind, took: Duration) {
        let us = duration_us(took);
        match kind {
            HandshakeKind::Full => self.tls_full.saturating_record(us),
            HandshakeKind::Resumed => self.tls_resumed.saturating_record(us),
        }
    }
}

/// Duration in whole microseconds, at least 1 (the histogram's lowest value).
pub fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Shared, lock-protected stats handle (critical sections are tiny and never await).
#[derive(Debug, Clone, Default)]
pub struct SharedStats(Arc<Mutex<Stats>>);

impl SharedStats {
    /// Locks the stats (a poisoned lock is still usable: counters stay consistent).
    pub fn lock(&self) -> MutexGuard<'_, Stats> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Stats {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let mut s = Stats::default();
        let ms = Duration::from_millis;
        for code in [200, 202, 429, 404, 400, 503, 302] {
            s.record_sent();
            s.record(Outcome::Status(code), ms(5), 0, ms(10));
        }
        s.record_sent();
        s.record(Outcome::Timeout, ms(1), 1, ms(20));
        s.record_sent();
        s.record(Outcome::Error, ms(1), 1, ms(15));
        let c = s.counters;
        assert_eq!((c.sent, c.completed), (9, 7));
        assert_eq!((c.s2xx, c.s429, c.s4xx, c.s5xx, c.other), (2, 1, 2, 1, 1));
        assert_eq!((c.timeouts, c.errors), (1, 1));
        assert_eq!(s.latency.len(), 7, "only completed requests have a latency");
        assert_eq!(s.per_second.len(), 1);
        assert_eq!(s.elapsed, ms(20));
        assert_eq!(s.codes[&404], 1);
        assert_eq!(s.codes[&202], 1);
        assert_eq!(s.codes.values().sum::<u64>(), 7);
        let sec = s.per_second_counts[0];
        assert_eq!((sec.completed, sec.s2xx, sec.errors), (7, 2, 2));
        assert_eq!(s.error_kinds[TIMEOUT_ERROR], 1);
    }

    #[test]
    fn errors_are_ranked_and_bounded() {
        let mut s = Stats::default();
        for _ in 0..3 {
            s.note_error("tls: UnknownIssuer".into());
        }
        s.note_error("connection refused".into());
        s.record(Outcome::Timeout, Duration::ZERO, 0, Duration::from_secs(2));
        let ranked = s.errors_ranked();
        assert_eq!(ranked[0], ("tls: UnknownIssuer".to_owned(), 3));
        assert_eq!(ranked.len(), 3);
        assert_eq!(s.per_second_counts.len(), 3, "finished in second 2");
        for i in 0..(MAX_ERROR_KINDS + 10) {
            s.note_error(format!("e{i}"));
        }
        assert_eq!(s.error_kinds.len(), MAX_ERROR_KINDS + 1);
        assert!(s.error_kinds[OTHER_ERRORS] >= 10);
    }
}
