//! edge-loadtest against a live edge: the tools run and their outputs agree
//! with what the edge counted. No timing is asserted (benchmarks live in bench/).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use edge_tests::*;

const TOPIC: &str = "loadtest-events";

async fn edge() -> (tempfile::TempDir, Broker, Edge) {
    edge_with("").await
}

/// [`edge`] with `extra` TOML appended to its config (plain HTTP only).
async fn edge_with(extra: &str) -> (tempfile::TempDir, Broker, Edge) {
    two_site_edge(tempfile::tempdir().unwrap(), TOPIC, None, extra).await
}

fn loadtest(args: &[&str]) -> serde_json::Value {
    let (code, summary, stderr) = loadtest_run(args);
    assert_eq!(code, Some(0), "edge-loadtest failed: {stderr}\n{summary}");
    summary
}

/// Runs edge-loadtest with `--json --quiet`: (exit code, summary, stderr).
fn loadtest_run(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(bin("edge-loadtest"))
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
    });
    (out.status.code(), summary, stderr)
}

async fn accepted_events(edge: &Edge) -> f64 {
    edge.metric(
        "edge_events_total",
        &[("site", "s1"), ("outcome", "accepted")],
    )
    .await
        + edge
            .metric(
                "edge_events_total",
                &[("site", "s2"), ("outcome", "accepted")],
            )
            .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_log_yields_the_expected_status_counts() {
    let (_dir, _broker, edge) = edge().await;
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge-replay.ndjson");
    let target = format!("http://{}", edge.ports.http);
    let summary = loadtest(&[
        "replay",
        file.to_str().unwrap(),
        "--target",
        &target,
        "--max",
        "--source-ips",
        "127.0.0.2-127.0.0.9",
    ]);
    // 202 ×3 (two posts and a batch), 200 pixel; 421 unknown host, 400
    // malformed body, 404 unknown path.
    assert_eq!(summary["sent"], 7, "{summary}");
    assert_eq!(summary["completed"], 7, "{summary}");
    assert_eq!(summary["status"]["2xx"], 4, "{summary}");
    assert_eq!(summary["status"]["4xx"], 3, "{summary}");
    assert_eq!(summary["status"]["5xx"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(accepted_events(&edge).await, 6.0);
    for (outcome, n) in [
        ("unknown_host", 1.0),
        ("malformed", 1.0),
        ("not_found", 1.0),
    ] {
        assert_eq!(
            edge.metric(
                "edge_requests_total",
                &[("site", "-"), ("outcome", outcome)]
            )
            .await
                + edge
                    .metric(
                        "edge_requests_total",
                        &[("site", "s1"), ("outcome", outcome)]
                    )
                    .await
                + edge
                    .metric(
                        "edge_requests_total",
                        &[("site", "s2"), ("outcome", outcome)]
                    )
                    .await,
            n,
            "{outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_load_is_counted_the_same_by_the_tool_and_the_edge() {
    let (_dir, _broker, edge) = edge().await;
    let target = format!("http://{}", edge.ports.http);
    let summary = loadtest(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "100",
        "--duration",
        "1",
        "--sites",
        "2",
        "--ips",
        "3",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
        "--connections",
        "8",
        "--seed",
        "7",
    ]);
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent > 0, "{summary}");
    assert_eq!(summary["completed"].as_u64().unwrap(), sent, "{summary}");
    assert_eq!(
        summary["status"]["2xx"].as_u64().unwrap(),
        sent,
        "{summary}"
    );
    assert_eq!(accepted_events(&edge).await, sent as f64);
    let p50 = summary["latency_ms"]["p50"].as_f64().unwrap();
    let max = summary["latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_clients_are_rate_limited_one_by_one() {
    // Every connection must start with a PROXY header; each of the 5
    // synthetic clients may send a burst of 2 events and then (at 0.01/s)
    // nothing more during the run.
    let (_dir, _broker, edge) = edge_with(
        "[client_ip]\nproxy_protocol = true\n\n\
         [rate_limits.per_ip]\nevents_per_second = 0.01\nburst = 2\n",
    )
    .await;
    let target = format!("http://{}", edge.ports.http);
    let summary = loadtest(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "60",
        "--duration",
        "1",
        "--ips",
        "5",
        "--host",
        "site1.example",
        "--client-ip-mode",
        "proxy-v2",
        "--connections",
        "4",
        "--seed",
        "3",
    ]);
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent >= 30, "{summary}");
    assert_eq!(summary["completed"].as_u64().unwrap(), sent, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["status"]["2xx"], 5 * 2, "{summary}");
    assert_eq!(
        summary["status"]["429"].as_u64().unwrap(),
        sent - 10,
        "{summary}"
    );
    assert_eq!(accepted_events(&edge).await, 10.0);
    // The edge saw PROXY v2 headers, not the loopback peer.
    assert!(
        edge.metric("edge_proxy_protocol_total", &[("outcome", "v2")])
            .await
            >= 5.0
    );
    assert_eq!(
        edge.metric(
            "edge_ratelimit_decisions_total",
            &[("scope", "per_ip"), ("decision", "allowed")]
        )
        .await,
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_new_connections_count_full_and_resumed_handshakes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "sites", &["site1.example", "site2.example"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let (_dir, _broker, edge) = two_site_edge(dir, TOPIC, Some(cert), "").await;
    let target = format!("https://{}", edge.ports.https);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "synth",
            "--target",
            &target,
            "--rate",
            "40",
            "--duration",
            "1",
            "--sites",
            "2",
            "--mode",
            "new-conn",
            "--connections",
            "2",
            "--ca-file",
            ca_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        loadtest(&args)
    };

    // Every connection is new and verified against the test CA; with the
    // session cache, only the first connection per site needs a full
    // handshake at most, the rest resume.
    let resumed = run(&[]);
    let sent = resumed["sent"].as_u64().unwrap();
    assert!(sent >= 20, "{resumed}");
    assert_eq!(
        resumed["status"]["2xx"].as_u64().unwrap(),
        sent,
        "{resumed}"
    );
    let tls = &resumed["tls"];
    let (full, again) = (
        tls["full"].as_u64().unwrap(),
        tls["resumed"].as_u64().unwrap(),
    );
    assert_eq!(full + again, sent, "one handshake per request: {resumed}");
    assert!(full >= 1 && again > full, "{resumed}");
    assert!(tls["resumed_p50_ms"].as_f64().unwrap() > 0.0, "{resumed}");

    // Without resumption every handshake is full.
    let fresh = run(&["--no-tls-resumption"]);
    let sent2 = fresh["sent"].as_u64().unwrap();
    assert_eq!(fresh["status"]["2xx"].as_u64().unwrap(), sent2, "{fresh}");
    assert_eq!(fresh["tls"]["full"].as_u64().unwrap(), sent2, "{fresh}");
    assert_eq!(fresh["tls"]["resumed"], 0, "{fresh}");
    assert_eq!(accepted_events(&edge).await, (sent + sent2) as f64);
}

fn access_log() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/access-events.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_log_replayed_as_events_sends_its_page_views_and_the_edge_drops_the_bot() {
    // tests/fixtures/access-events.log, 13 lines: 5 page views (GET answered
    // 200/304, one of them Googlebot's), 3 assets, a 404 and a 301, a HEAD
    // and a POST, and line 8 cut off inside its user agent. The trailing
    // vhost field puts four page views on site1.example and one on site2.
    let (_dir, _broker, edge) = edge().await;
    let target = format!("http://{}", edge.ports.http);
    let admin = format!("http://{}", edge.ports.admin);
    let summary = loadtest(&[
        "replay",
        access_log().to_str().unwrap(),
        "--target",
        &target,
        "--as-events",
        "--speed",
        "20",
        "--source-ips",
        "127.0.0.2-127.0.0.9",
        "--admin",
        &admin,
    ]);
    let input = &summary["input"];
    assert_eq!(input["format"], "access_log", "{summary}");
    assert_eq!(input["lines"], 13, "{summary}");
    assert_eq!(input["malformed"], 1, "{summary}");
    assert_eq!(input["malformed_lines"][0]["line"], 8, "{summary}");
    assert!(
        input["malformed_lines"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not closed"),
        "{summary}"
    );
    assert_eq!(input["page_views"], 5, "{summary}");
    assert_eq!(
        input["skipped"],
        serde_json::json!({"asset": 3, "status": 2, "not_get": 2}),
        "{summary}"
    );

    // Every page view was sent and answered 2xx (the bot's too: the edge
    // answers a dropped bot like a browser).
    assert_eq!(summary["sent"], 5, "{summary}");
    assert_eq!(summary["completed"], 5, "{summary}");
    assert_eq!(summary["status"]["2xx"], 5, "{summary}");
    assert_eq!(summary["status_codes"], serde_json::json!({"202": 5}));
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["verdict"]["passed"], true, "{summary}");

    // The tool's report of the edge's side, read from --admin …
    let seen = &summary["edge"];
    assert_eq!(seen["complete"], true, "{summary}");
    assert_eq!(
        seen["requests"],
        serde_json::json!({"accepted": 4, "bot_dropped": 1}),
        "{summary}"
    );
    assert_eq!(
        seen["events"],
        serde_json::json!({"accepted": 4}),
        "{summary}"
    );
    assert_eq!(
        seen["bot_dropped"],
        serde_json::json!({"ua_list": 1}),
        "{summary}"
    );
    assert_eq!(seen["rate_limited"], serde_json::json!({}), "{summary}");
    assert_eq!(seen["rejected"], serde_json::json!({}), "{summary}");
    // … agrees with the edge's metrics read here.
    assert_eq!(
        edge.metric(
            "edge_bot_verdicts_total",
            &[("reason", "ua_list"), ("action", "dropped")]
        )
        .await,
        1.0
    );
    for (site, n) in [("s1", 3.0), ("s2", 1.0)] {
        assert_eq!(
            edge.metric(
                "edge_events_total",
                &[("site", site), ("outcome", "accepted")]
            )
            .await,
            n,
            "{site}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_which_every_request_fails_exits_non_zero_naming_the_error() {
    // The edge serves a certificate from one CA; the tool trusts another,
    // so every handshake fails (the issue's "TLS trust error on every request").
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "sites", &["site1.example", "site2.example"]);
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new().cert_pem).unwrap();
    let (_dir, _broker, edge) = two_site_edge(dir, TOPIC, Some(cert), "").await;
    let target = format!("https://{}", edge.ports.https);
    let (code, summary, stderr) = loadtest_run(&[
        "replay",
        access_log().to_str().unwrap(),
        "--target",
        &target,
        "--as-events",
        "--max",
        "--ca-file",
        other_ca.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}\n{summary}");
    assert_eq!(summary["sent"], 5, "{summary}");
    assert_eq!(summary["completed"], 0, "{summary}");
    assert_eq!(summary["errors"], 5, "{summary}");
    assert_eq!(summary["verdict"]["passed"], false, "{summary}");
    let first = &summary["error_kinds"][0];
    assert_eq!(first["count"], 5, "{summary}");
    // Both test CAs have the same name, so rustls reports the other CA's
    // signature (BadSignature) rather than an unknown issuer.
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid peer certificate: "),
        "{summary}"
    );
    assert!(stderr.contains("FAILED: no request succeeded"), "{stderr}");
    assert!(stderr.contains("error: 5 × "), "{stderr}");
    // The edge saw the five refused handshakes (it counts a handshake when
    // the client's alert arrives, so wait for it) and nothing got through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let failed = edge
            .metric("edge_tls_handshakes_total", &[("outcome", "failed")])
            .await;
        if failed >= 5.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edge counted {failed} failed handshakes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(accepted_events(&edge).await, 0.0);
    assert_eq!(
        edge.metric("edge_tls_handshakes_total", &[("outcome", "ok")])
            .await,
        0.0
    );
}
