//! Live progress line on stderr (indicatif), refreshed about four times a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::stats::SharedStats;

/// A running progress display; call [`Progress::finish`] when the run ends.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts the display unless `quiet` is set or stderr is not a terminal.
    pub fn start(stats: SharedStats, start: Instant, quiet: bool) -> Option<Self> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut last = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let c = stats.counters();
                let now = Instant::now();
                let done = c.completed + c.timeouts + c.errors;
                let dt = now.duration_since(last.0).as_secs_f64();
                let rate = if dt > 0.0 {
                    done.saturating_sub(last.1) as f64 / dt
                } else {
                    0.0
                };
                last = (now, done);
                shown.set_message(format!(
                    "{:>6.1}s {:>8.0} req/s  sent {}  2xx {}  4xx {}  429 {}  5xx {}  err {}",
                    now.duration_since(start).as_secs_f64(),
                    rate,
                    c.sent,
                    c.s2xx,
                    c.s4xx,
                    c.s429,
                    c.s5xx,
                    c.errors + c.timeouts,
                ));
                shown.tick();
            }
        });
        Some(Self { bar, task })
    }

    /// Stops updating and clears the line.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
