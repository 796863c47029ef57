#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::samples::Samples;
use crate::scrape::{CertsStatus, Snapshot, SpoolStatus};

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn app_with(text: &str) -> App {
    let mut app = App::new("http://127.0.0.1:9901".into(), Duration::from_secs(1));
    app.apply(Ok(Snapshot {
        at: Instant::now(),
        samples: Samples::parse(text).unwrap(),
        ready: Ok((true, "ready".into())),
        spool: Ok(SpoolStatus::default()),
        certs: Ok(CertsStatus::default()),
    }));
    app
}

#[test]
fn the_screen_shows_sites_answers_drops_and_delivery() {
    let app = app_with(
        "edge_requests_total{outcome=\"accepted\",site=\"shop\"} 3\n\
         edge_requests_total{outcome=\"bot_dropped\",site=\"shop\"} 1\n\
         edge_events_total{outcome=\"accepted\",site=\"shop\"} 5\n\
         edge_bot_verdicts_total{action=\"dropped\",reason=\"ua_list\"} 1\n\
         edge_kafka_ready 1\nedge_spool_records 2\nedge_spool_writable 1\n\
         edge_tls_handshakes_total{outcome=\"ok\"} 9\n\
         edge_config_info{version=\"abcdef123456\"} 1\n",
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("config abcdef123456"), "{text}");
    assert!(text.contains(" ready "), "{text}");
    let shop = text.lines().find(|l| l.contains("shop")).unwrap();
    let cells: Vec<&str> = shop
        .split(|c: char| c == '│' || c.is_whitespace())
        .filter(|c| !c.is_empty())
        .collect();
    // site, requests, req/s, events, events/s, limited, bots, failed
    assert_eq!(cells, ["shop", "4", "-", "5", "-", "0", "1", "0"], "{shop}");
    assert!(text.contains("2xx"), "{text}");
    assert!(text.contains("ua_list"), "{text}");
    assert!(text.contains("kafka ready"), "{text}");
    assert!(text.contains("waiting 2 records"), "{text}");
    assert!(text.contains("first scrape: totals only"), "{text}");
}

#[test]
fn an_unreachable_admin_is_said_on_screen_with_the_retry_count() {
    let mut app = App::new("http://127.0.0.1:9".into(), Duration::from_secs(1));
    app.apply(Err("cannot connect: refused".into()));
    app.apply(Err("cannot connect: refused".into()));
    let text = screen(&app, 120, 20);
    assert!(
        text.contains(
            "cannot read http://127.0.0.1:9 (2 failed, retrying every 1.0 s): cannot connect: refused"
        ),
        "{text}"
    );
    assert!(
        text.contains("waiting for http://127.0.0.1:9/metrics"),
        "{text}"
    );
}

#[test]
fn a_tiny_terminal_gets_a_message_not_a_panic() {
    let app = app_with("edge_kafka_ready 1\n");
    let text = screen(&app, 30, 6);
    assert!(text.contains("terminal too small"), "{text}");
    // and every size in between draws
    for (w, h) in [(40, 10), (41, 11), (80, 24), (200, 60)] {
        let _ = screen(&app, w, h);
    }
}

#[test]
fn numbers_are_readable() {
    assert_eq!(count(12.0), "12");
    assert_eq!(count(1_234_567.0), "1.23M");
    assert_eq!(
        per_sec(Counter {
            total: 1.0,
            per_sec: None
        }),
        "-"
    );
    assert_eq!(
        per_sec(Counter {
            total: 1.0,
            per_sec: Some(2.25)
        }),
        "2.2"
    );
    assert_eq!(
        per_sec(Counter {
            total: 1.0,
            per_sec: Some(1234.4)
        }),
        "1234"
    );
    assert_eq!(bytes(2048.0), "2.0 KiB");
    assert_eq!(age(90.0), "2 min");
    assert_eq!(age(3.0 * 86_400.0), "3.0 days");
}

#[test]
fn names_needing_attention_show_when_they_are_tried_next() {
    let mut app = app_with("edge_kafka_ready 1\n");
    let mut last = app.last.clone().unwrap();
    let in_ten_minutes = now_unix() as i64 + 600;
    last.certs = Ok(CertsStatus {
        acme: Some(serde_json::json!({})),
        names: vec![crate::scrape::CertName {
            name: "b.test".into(),
            state: Some("backoff".into()),
            next_attempt_unix: Some(in_ten_minutes),
            last_error: Some("challenge failed".into()),
            ..Default::default()
        }],
    });
    app.apply(Ok(last));
    let text = screen(&app, 160, 40);
    assert!(text.contains("backoff 1"), "{text}");
    // the panel wraps the line after the time
    assert!(
        text.contains("b.test: backoff, next try in 10 min (challenge")
            || text.contains("b.test: backoff, next try in 9 min (challenge"),
        "{text}"
    );
}
