//! The screen's state and the loop: a scraper task reads the admin
//! listener every interval; the loop redraws on each result, on resize and
//! on keys, and ends on `q`, `Esc`, Ctrl-C, SIGINT or SIGTERM with the
//! terminal restored.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::model::{self, View};
use crate::scrape::{Admin, Snapshot};

/// The last failed refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// Failed refreshes in a row.
    pub count: u32,
}

/// What the screen shows.
#[derive(Debug, Clone)]
pub struct App {
    /// The admin listener's base URL.
    pub target: String,
    /// Time between refreshes.
    pub interval: Duration,
    /// The last snapshot read.
    pub last: Option<Snapshot>,
    /// The view of the last two snapshots.
    pub view: Option<View>,
    /// Set while refreshes fail.
    pub failure: Option<Failure>,
    /// When the last snapshot was read.
    pub last_update: Option<Instant>,
}

impl App {
    /// An empty screen for `target`.
    pub fn new(target: String, interval: Duration) -> App {
        App {
            target,
            interval,
            last: None,
            view: None,
            failure: None,
            last_update: None,
        }
    }

    /// Takes one refresh's result. A failure keeps the last view on screen
    /// (marked as old by the status line); the next success computes rates
    /// against the last snapshot read, over the real time between them.
    pub fn apply(&mut self, result: Result<Snapshot, String>) {
        match result {
            Ok(snapshot) => {
                self.view = Some(model::build(self.last.as_ref(), &snapshot));
                self.last_update = Some(snapshot.at);
                self.last = Some(snapshot);
                self.failure = None;
            }
            Err(error) => {
                let count = self.failure.as_ref().map_or(0, |f| f.count) + 1;
                self.failure = Some(Failure { error, count });
            }
        }
    }
}

/// Restores the terminal when dropped, on every way out of [`run_screen`].
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Whether a key ends `edge top`.
fn is_quit(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Runs the screen until the operator quits.
pub async fn run_screen(admin: Admin, interval: Duration) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "edge top draws a live screen and needs a terminal, but stdout is not one; \
             for scripts read {}/metrics (Prometheus text) or /admin/spool and /admin/certs (JSON)",
            admin.base()
        );
    }
    let mut app = App::new(admin.base().to_string(), interval);
    let (tx, mut rx) = mpsc::channel(1);
    let scraper = tokio::spawn(scrape_loop(admin, interval, tx));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;

    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let _restore = Restore;
    let mut events = EventStream::new();
    let outcome = loop {
        if let Err(e) = terminal.draw(|frame| crate::ui::draw(frame, &app)) {
            break Err(anyhow::Error::new(e).context("drawing the screen"));
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if is_quit(&key) => break Ok(()),
                // a resize (or any other event) redraws at the new size
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("reading the terminal")),
                None => break Ok(()),
            },
            Some(result) = rx.recv() => app.apply(result),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        }
    };
    scraper.abort();
    outcome
}

/// Reads a snapshot every `interval` (the first at once) and sends it.
/// Ends when the screen is gone.
async fn scrape_loop(admin: Admin, interval: Duration, tx: mpsc::Sender<Result<Snapshot, String>>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = admin.snapshot().await;
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::samples::Samples;

    fn snap(at: Instant, requests: u32) -> Snapshot {
        let text = format!("edge_requests_total{{outcome=\"accepted\",site=\"s1\"}} {requests}\n");
        Snapshot {
            at,
            samples: Samples::parse(&text).unwrap(),
            ready: Ok((true, "ready".into())),
            spool: Err("n/a".into()),
            certs: Err("n/a".into()),
        }
    }

    #[test]
    fn failures_are_counted_and_the_next_success_rates_against_the_last_snapshot() {
        let t0 = Instant::now();
        let mut app = App::new("http://127.0.0.1:1".into(), Duration::from_secs(1));
        app.apply(Err("connection refused".into()));
        app.apply(Err("connection refused".into()));
        assert_eq!(app.failure.as_ref().unwrap().count, 2);
        assert!(app.view.is_none());
        app.apply(Ok(snap(t0, 10)));
        assert!(app.failure.is_none());
        app.apply(Err("timeout".into()));
        // the view stays while a refresh fails
        assert_eq!(app.view.as_ref().unwrap().sites[0].requests.total, 10.0);
        app.apply(Ok(snap(t0 + Duration::from_secs(4), 30)));
        let view = app.view.as_ref().unwrap();
        assert_eq!(view.interval_seconds, Some(4.0));
        assert_eq!(view.sites[0].requests.per_sec, Some(5.0));
    }

    #[test]
    fn quit_keys() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
