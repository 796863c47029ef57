//! Hot reload over every trigger, rejection of broken or restart-only changes,
//! and `edge validate`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use edge_tests::*;

struct Setup {
    _dir: tempfile::TempDir,
    _broker: Broker,
    edge: Edge,
    config: EdgeUnderTest,
}

async fn setup(topic: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let cert = TestCa::new().issue(dir.path(), "a", &["a.test", "new.test"]);
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(cert)
        .site("site-a", &["a.test"]);
    let edge = config.start().await;
    Setup {
        _dir: dir,
        _broker: broker,
        edge,
        config,
    }
}

async fn status_for(edge: &Edge, host: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/api/event", edge.ports.http))
        .header("host", host)
        .body(r#"{"name":"pageview","url":"https://a.test/"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_change_applies_live_without_dropping_in_flight_requests() {
    let s = setup("reload-live").await;
    assert_eq!(status_for(&s.edge, "new.test").await, 421);

    // Keep-alive traffic to a.test runs during the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        let url = format!("http://{}/api/event", s.edge.ports.http);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .header("host", "a.test")
                    .body(r#"{"name":"pageview","url":"https://a.test/during-reload"}"#)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    // Enough requests on each side of the reload, counted rather than timed.
    let wait_for_more = |from: u64| {
        let ok = ok.clone();
        async move {
            assert_eventually!(
                ok.load(Ordering::Relaxed) >= from + 20,
                Duration::from_secs(30),
                "traffic stalled at {} requests",
                ok.load(Ordering::Relaxed)
            );
        }
    };
    wait_for_more(0).await;
    s.config
        .clone()
        .domains("site-a", &["a.test", "new.test"])
        .write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["outcome"] == "applied" || body["outcome"] == "unchanged",
        "{body}"
    );
    wait_for_more(ok.load(Ordering::Relaxed)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(status_for(&s.edge, "new.test").await, 202);
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "requests failed during the reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_change_and_sighup_trigger_reloads() {
    let s = setup("reload-triggers").await;
    // File watcher: removing the site's only other domain takes effect by itself.
    s.config.clone().domains("site-a", &["new.test"]).write();
    assert_eventually!(
        status_for(&s.edge, "new.test").await == 202,
        Duration::from_secs(10),
        "file change was not picked up"
    );
    assert_eq!(status_for(&s.edge, "a.test").await, 421);

    // SIGHUP: the watcher may also fire, so check the effect, not the trigger count.
    s.config.write();
    Command::new("kill")
        .args(["-HUP", &s.edge.pid().to_string()])
        .status()
        .unwrap();
    assert_eventually!(
        status_for(&s.edge, "a.test").await == 202,
        Duration::from_secs(10),
        "SIGHUP reload did not restore a.test"
    );
    assert!(
        s.edge
            .metric("edge_config_reloads_total", &[("outcome", "applied")])
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_reload_keeps_the_old_config_and_says_why() {
    let s = setup("reload-broken").await;
    let before: serde_json::Value = s.edge.admin_config().await;

    s.config
        .clone()
        .kafka("flush_everything = true")
        .domains("site-a", &["new.test", "NOT A HOST"])
        .write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["outcome"], "invalid");
    let errors: Vec<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(errors.len() >= 2, "all errors at once: {errors:?}");
    let path = s.edge.config_path.display().to_string();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&path) && e.contains("flush_everything")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("NOT A HOST")),
        "{errors:?}"
    );
    // Old config still serves.
    assert_eq!(status_for(&s.edge, "a.test").await, 202);
    assert_eq!(status_for(&s.edge, "new.test").await, 421);
    let after: serde_json::Value = s.edge.admin_config().await;
    assert_eq!(before["version"], after["version"]);

    // A listener change needs a restart: rejected as a whole, even with a valid site change.
    let other_ports = EdgePorts {
        http: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        ..s.edge.ports
    };
    s.config
        .clone()
        .ports(other_ports)
        .domains("site-a", &["a.test", "new.test"])
        .write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["outcome"], "rejected");
    assert!(
        body["errors"].to_string().contains("listeners.http"),
        "{body}"
    );
    assert_eq!(status_for(&s.edge, "new.test").await, 421);
    assert!(
        s.edge
            .metric("edge_config_reloads_total", &[("outcome", "invalid")])
            .await
            >= 1.0
    );
    assert!(
        s.edge
            .metric("edge_config_reloads_total", &[("outcome", "rejected")])
            .await
            >= 1.0
    );
}

#[test]
fn validate_reports_every_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = BackendKey::generate(&dir.path().join("keys"));
    let cert = TestCa::new().issue(dir.path(), "a", &["a.test"]);
    let good_config = EdgeUnderTest::new(dir.path(), "127.0.0.1:9092", "edge.events", &key)
        .cert(cert.clone())
        .site("site-a", &["a.test"]);
    let good = good_config.render();
    let good_path = dir.path().join("good.toml");
    std::fs::write(&good_path, &good).unwrap();
    let out = Command::new(bin("edge"))
        .arg("validate")
        .arg(&good_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    // Its answer is stdout; stderr carries no INFO log line (issue 17 §4).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("INFO"), "{stderr}");

    let mut bad_config = good_config
        .clone()
        .kafka("linger_seconds = 3")
        .active_key_id("0000000000000000");
    bad_config.sites[0].id = "Site A!".into();
    let bad = bad_config.render();
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, &bad).unwrap();
    let out = Command::new(bin("edge"))
        .arg("validate")
        .arg(&bad_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&*bad_path.display().to_string()))
        .collect();
    assert!(lines.len() >= 3, "expected every error at once:\n{stderr}");
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        stderr.contains(&format!(
            ":{}: kafka.linger_seconds",
            line_of("linger_seconds")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(":{}: sites[0].id", line_of("Site A!"))),
        "{stderr}"
    );
    assert!(stderr.contains("encryption.active_key_id"), "{stderr}");

    // A certificate that does not exist is found by validate too (runtime build).
    let missing = EdgeUnderTest::new(dir.path(), "127.0.0.1:9092", "edge.events", &key)
        .cert(("/nonexistent/cert.pem".into(), cert.1))
        .site("site-a", &["a.test"])
        .render();
    let missing_path = dir.path().join("missing.toml");
    std::fs::write(&missing_path, &missing).unwrap();
    let out = Command::new(bin("edge"))
        .arg("validate")
        .arg(&missing_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.certificates[0].cert_file")
            && stderr.contains("/nonexistent/cert.pem"),
        "{stderr}"
    );
}
