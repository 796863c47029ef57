//! Intended send times: constant rate (with optional bursts) for synth, recorded
//! inter-arrival times scaled by `--speed` (or none, for `--max`) for replay.

use std::time::Duration;

use thiserror::Error;

/// How a replay is paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Original inter-arrival times divided by this factor.
    Speed(f64),
    /// As fast as possible (closed loop, bounded by concurrency).
    Max,
}

/// Intended offsets (from the run start) for recorded timestamps.
///
/// Offsets are relative to the first record; timestamps that go backwards are
/// clamped so the schedule never goes back in time. `Pacing::Max` gives `None`
/// for every record.
pub fn replay_offsets(ts_ms: &[i64], pacing: Pacing) -> Vec<Option<Duration>> {
    let Some(&first) = ts_ms.first() else {
        return Vec::new();
    };
    match pacing {
        Pacing::Max => vec![None; ts_ms.len()],
        Pacing::Speed(speed) => {
            let mut latest = first;
            ts_ms
                .iter()
                .map(|&ts| {
                    latest = latest.max(ts);
                    let ms = (latest - first) as f64 / speed;
                    Some(Duration::from_secs_f64(ms / 1000.0))
                })
                .collect()
        }
    }
}

/// Errors from `--burst`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("--burst must be FACTOR:PERIOD_S with FACTOR > 0 and PERIOD_S >= 1, got {0:?}")]
pub struct BurstError(pub String);

/// A periodic burst: the first second of every `period_s` runs at `factor` × rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Rate multiplier during a burst.
    pub factor: f64,
    /// Seconds between burst starts.
    pub period_s: f64,
}

impl Burst {
    /// Parses `FACTOR:PERIOD_S`, e.g. `5:10`.
    pub fn parse(s: &str) -> Result<Self, BurstError> {
        let bad = || BurstError(s.to_owned());
        let (f, p) = s.split_once(':').ok_or_else(bad)?;
        let factor: f64 = f.trim().parse().map_err(|_| bad())?;
        let period_s: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(factor > 0.0 && factor.is_finite() && period_s >= 1.0 && period_s.is_finite()) {
            return Err(bad());
        }
        Ok(Self { factor, period_s })
    }
}

/// Constant-rate schedule (optionally bursty) over a fixed duration.
#[derive(Debug, Clone)]
pub struct RateSchedule {
    rate: f64,
    duration_s: f64,
    burst: Option<Burst>,
    next_s: f64,
}

impl RateSchedule {
    /// `rate` requests per second for `duration_s` seconds.
    pub fn new(rate: f64, duration_s: f64, burst: Option<Burst>) -> Self {
        Self {
            rate,
            duration_s,
            burst,
            next_s: 0.0,
        }
    }

    fn rate_at(&self, t: f64) -> f64 {
        match self.burst {
            Some(b) if t % b.period_s < 1.0 => self.rate * b.factor,
            _ => self.rate,
        }
    }
}

impl Iterator for RateSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // The sum of 1/rate steps drifts below exact multiples (0.05 × 10
        // = 0.49999…), which would add one request at the very end.
        if self.rate <= 0.0 || self.next_s >= self.duration_s - 1e-9 {
            return None;
        }
        let t = self.next_s;
        self.next_s += 1.0 / self.rate_at(t);
        Some(Duration::from_secs_f64(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_scales_inter_arrival_times() {
        let ts = [1_000, 1_500, 3_000, 2_000, 4_000];
        let ms = |v: Vec<Option<Duration>>| {
            v.into_iter()
                .map(|d| d.unwrap().as_millis())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ms(replay_offsets(&ts, Pacing::Speed(1.0))),
            vec![0, 500, 2000, 2000, 3000],
            "backwards timestamps are clamped"
        );
        assert_eq!(
            ms(replay_offsets(&ts, Pacing::Speed(2.0))),
            vec![0, 250, 1000, 1000, 1500]
        );
        assert_eq!(
            ms(replay_offsets(&ts, Pacing::Speed(0.5))),
            vec![0, 1000, 4000, 4000, 6000]
        );
    }

    #[test]
    fn max_has_no_intended_times() {
        let v = replay_offsets(&[5, 10, 20], Pacing::Max);
        assert_eq!(v, vec![None, None, None]);
        assert!(replay_offsets(&[], Pacing::Speed(1.0)).is_empty());
    }

    #[test]
    fn constant_rate_schedule() {
        let v: Vec<_> = RateSchedule::new(10.0, 2.0, None).collect();
        assert_eq!(v.len(), 20);
        assert_eq!(v[0], Duration::ZERO);
        assert!((v[1].as_secs_f64() - 0.1).abs() < 1e-9);
        assert!(v.last().unwrap().as_secs_f64() < 2.0);
        assert_eq!(RateSchedule::new(20.0, 0.5, None).count(), 10);
        assert_eq!(RateSchedule::new(3.0, 1.0, None).count(), 3);
    }

    #[test]
    fn burst_schedule() {
        let b = Burst::parse("3:2").unwrap();
        assert_eq!(
            b,
            Burst {
                factor: 3.0,
                period_s: 2.0
            }
        );
        // 10 rps, 4 s, burst ×3 during seconds [0,1) and [2,3): 30+10+30+10
        let n = RateSchedule::new(10.0, 4.0, Some(b)).count();
        assert!((79..=81).contains(&n), "{n}");
        assert!(Burst::parse("3").is_err());
        assert!(Burst::parse("0:5").is_err());
        assert!(Burst::parse("2:0.5").is_err());
    }
}
