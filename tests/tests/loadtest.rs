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
    let out = Command::new(bin("edge-loadtest"))
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edge-loadtest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
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
