//! End-to-end runs of the binary against a local recording server.

#![allow(clippy::unwrap_used)] // helpers below are test code

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use common::{answered, run_json, start};

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn assert_status_matches(summary: &serde_json::Value, seen: &[common::Seen]) {
    let (ok, limited, other4xx) = answered(seen);
    let n = seen.len() as u64;
    assert_eq!(summary["sent"], n, "{summary}");
    assert_eq!(summary["completed"], n, "{summary}");
    assert_eq!(summary["status"]["2xx"], ok, "{summary}");
    assert_eq!(summary["status"]["429"], limited, "{summary}");
    assert_eq!(summary["status"]["4xx"], other4xx, "{summary}");
    assert_eq!(summary["status"]["5xx"], 0, "{summary}");
    assert_eq!(summary["timeouts"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synth_uses_distinct_source_ips_and_counts_statuses() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let summary = run_json(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "40",
        "--duration",
        "1",
        "--sites",
        "2",
        "--ips",
        "3",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
        "--connections",
        "4",
        "--bot-share",
        "0.5",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 40, "open loop: rate × duration requests");
    let peers: BTreeSet<IpAddr> = seen.iter().map(|s| s.peer).collect();
    assert_eq!(peers, ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]));
    let hosts: BTreeSet<&str> = seen.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(hosts, BTreeSet::from(["site1.example", "site2.example"]));
    assert!(
        seen.iter()
            .all(|s| s.method == "POST" && s.path == "/api/event")
    );
    assert_status_matches(&summary, &seen);
    assert_eq!(summary["status"]["429"], 4, "every 10th answered 429");
    assert!(summary["tls"].is_null());
    assert!(summary["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synth_new_conn_over_h2c_with_plot() {
    let server = start(true).await;
    let target = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    let summary = run_json(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "20",
        "--duration",
        "1",
        "--batch",
        "3",
        "--mode",
        "new-conn",
        "--http2",
        "--plot",
        svg.to_str().unwrap(),
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|s| s.host == "site1.example"));
    assert_status_matches(&summary, &seen);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("Latency by percentile"));
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_ndjson_hits_each_record_host_and_path() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let file = fixture("replay-small.ndjson");
    let summary = run_json(&[
        "replay",
        &file,
        "--target",
        &target,
        "--speed",
        "10",
        "--connections",
        "2",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();

    let text = std::fs::read_to_string(&file).unwrap();
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut client_of: HashMap<(String, String), String> = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let host = v["host"].as_str().unwrap().to_owned();
        let path = v["path"].as_str().unwrap().to_owned();
        let body = v["body"].as_str().unwrap_or_default().to_owned();
        let client = v["client_ip"].as_str().unwrap().to_owned();
        assert!(
            client_of.insert((path.clone(), body), client).is_none(),
            "fixture rows are distinct"
        );
        expected.push((host, path));
    }
    let mut got: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.host.clone(), s.path.clone()))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    // 8 records: 7 handled (5 POST → 202, 2 gif → 200) and one unknown path → 404.
    assert_status_matches(&summary, &seen);
    assert_eq!(summary["status"]["2xx"], 7);
    assert_eq!(summary["status"]["4xx"], 1);

    // Three recorded clients → three local addresses, in order of first appearance.
    let peers: BTreeSet<IpAddr> = seen.iter().map(|s| s.peer).collect();
    assert_eq!(peers, ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]));
    let mapping = HashMap::from([
        ("203.0.113.7", "127.0.0.2"),
        ("198.51.100.1", "127.0.0.3"),
        ("192.0.2.5", "127.0.0.4"),
    ]);
    for s in &seen {
        let client = &client_of[&(s.path.clone(), s.body.clone())];
        assert_eq!(s.peer.to_string(), mapping[client.as_str()], "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_combined_log_max_speed() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let summary = run_json(&[
        "replay",
        &fixture("access-small.log"),
        "--target",
        &target,
        "--max",
        "--host",
        "fallback.example",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    let mut hosts: Vec<&str> = seen.iter().map(|s| s.host.as_str()).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        vec![
            "fallback.example",
            "site1.example",
            "site1.example",
            "site2.example"
        ]
    );
    assert_status_matches(&summary, &seen);
    assert_eq!(summary["status"]["2xx"], 3);
    assert_eq!(summary["status"]["4xx"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replay_file_fails_with_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(
        &file,
        "{\"ts_ms\":1,\"method\":\"GET\",\"path\":\"/\"}\n{\"ts_ms\":\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-loadtest"))
        .args([
            "replay",
            file.to_str().unwrap(),
            "--target",
            "http://127.0.0.1:9",
            "--quiet",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
}
