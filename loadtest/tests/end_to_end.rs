//! End-to-end runs of the binary against a local recording server.

#![allow(clippy::unwrap_used)] // helpers below are test code

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use common::{answered, run_json, run_raw, start};

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
    // --sites 1 without --host: the target's host.
    assert!(seen.iter().all(|s| s.host == "127.0.0.1"), "{seen:?}");
    assert_status_matches(&summary, &seen);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("Latency by percentile"));
    assert!(svg.contains("Achieved requests/s"));
    assert!(svg.contains(&format!(
        "synth {target} | 20 req/s for 1 s | 16 connections, new-conn, HTTP/2"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synth_host_names_the_one_site() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    run_json(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "10",
        "--duration",
        "0.5",
        "--host",
        "localhost",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| s.host == "localhost"), "{seen:?}");
    let (code, _, stderr) = run_raw(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "10",
        "--duration",
        "0.5",
        "--host",
        "a.example",
        "--sites",
        "2",
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--host names the one site of --sites 1"),
        "{stderr}"
    );
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
async fn malformed_lines_are_skipped_and_reported_or_stop_a_strict_run() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(
        &file,
        "{\"ts_ms\":1,\"method\":\"POST\",\"path\":\"/api/event\"}\n{\"ts_ms\":\n\n{\"ts_ms\":2,\"method\":\"POST\",\"path\":\"/api/event\"}\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, stdout, stderr) = run_raw(&["replay", file, "--target", &target, "--max"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "input      3 lines (ndjson), 1 malformed skipped (line 2: invalid NDJSON record"
        ),
        "{stdout}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 2);

    let (code, stdout, stderr) =
        run_raw(&["replay", file, "--target", &target, "--max", "--strict"]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert_eq!(
        server.seen.lock().unwrap().len(),
        2,
        "a strict run sends nothing"
    );
}

fn access_log() -> String {
    format!(
        "{}/../tests/fixtures/access-events.log",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_as_events_sends_what_the_tracker_would_have() {
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let summary = run_json(&[
        "replay",
        &access_log(),
        "--target",
        &target,
        "--as-events",
        "--max",
        "--source-ips",
        "127.0.0.2-127.0.0.9",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_status_matches(&summary, &seen);
    assert_eq!(summary["input"]["page_views"], 5, "{summary}");
    let mut urls: Vec<(String, String)> = Vec::new();
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/api/event"));
        assert_eq!(s.content_type, "text/plain");
        assert_eq!(s.origin, format!("https://{}", s.host));
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body["name"], "pageview");
        urls.push((s.host.clone(), body["url"].as_str().unwrap().to_owned()));
    }
    urls.sort();
    assert_eq!(
        urls,
        vec![
            ("site1.example".into(), "https://site1.example/".into()),
            (
                "site1.example".into(),
                "https://site1.example/blog/first-post".into()
            ),
            (
                "site1.example".into(),
                "https://site1.example/blog/first-post".into()
            ),
            (
                "site1.example".into(),
                "https://site1.example/contact".into()
            ),
            (
                "site2.example".into(),
                "https://site2.example/about?utm_source=newsletter".into()
            ),
        ]
    );
    // The crawler is sent as it is, from its own address (the third client).
    let bot: Vec<_> = seen
        .iter()
        .filter(|s| s.user_agent.contains("Googlebot"))
        .collect();
    assert_eq!(bot.len(), 1, "{seen:?}");
    assert_eq!(bot[0].peer.to_string(), "127.0.0.4");

    // --host overrides the log's host field; the text summary reports the
    // input.
    let (code, stdout, stderr) = run_raw(&[
        "replay",
        &access_log(),
        "--target",
        &target,
        "--as-events",
        "--max",
        "--host",
        "other.example",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen[5..].iter().all(|s| s.host == "other.example"),
        "{seen:?}"
    );
    assert!(stdout.contains("input      13 lines (access_log), 1 malformed skipped (line 8: a quoted field is not closed"), "{stdout}");
    assert!(
        stdout.contains("page views 5 sent as events; not page views: asset=3 not_get=2 status=2"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_without_a_2xx_or_with_too_many_errors_exit_2() {
    // Every answer a 404: no request succeeded.
    let server = start(false).await;
    let target = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("404.ndjson");
    std::fs::write(
        &file,
        "{\"ts_ms\":1,\"method\":\"GET\",\"path\":\"/a\"}\n{\"ts_ms\":2,\"method\":\"GET\",\"path\":\"/b\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_raw(&[
        "replay",
        file.to_str().unwrap(),
        "--target",
        &target,
        "--max",
    ])
    .await;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("4xx codes  404=2"), "{stdout}");
    assert!(
        stdout.contains("result     FAILED: no request succeeded"),
        "{stdout}"
    );
    assert!(
        stderr.contains("edge-loadtest: FAILED: no request succeeded"),
        "{stderr}"
    );

    // Nothing listens: every request is a connect error, named on stderr.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, stdout, stderr) = run_raw(&[
        "synth",
        "--target",
        &dead,
        "--rate",
        "20",
        "--duration",
        "0.5",
        "--json",
    ])
    .await;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["errors"], 10, "{summary}");
    assert_eq!(summary["error_kinds"][0]["count"], 10, "{summary}");
    assert_eq!(summary["verdict"]["error_rate"], 1.0, "{summary}");
    assert_eq!(summary["verdict"]["failures"].as_array().unwrap().len(), 2);
    assert!(stderr.contains("error: 10 × "), "{stderr}");
    assert!(stderr.contains("over --max-error-rate 1.0 %"), "{stderr}");

    // A 2xx among them and errors within --max-error-rate: passed.
    let (code, stdout, stderr) = run_raw(&[
        "synth",
        "--target",
        &target,
        "--rate",
        "20",
        "--duration",
        "0.5",
        "--max-error-rate",
        "0",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("result     passed"), "{stdout}");
}
