//! TLS runs: SNI per site, session resumption counting, --ca-file and --insecure.

mod common;

use std::collections::BTreeSet;

use common::{run_json, start_tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_conn_tls_resumes_sessions_and_sends_sni() {
    let server = start_tls().await;
    let target = format!("https://{}", server.addr);
    let summary = run_json(&[
        "synth",
        "--target",
        &target,
        "--insecure",
        "--rate",
        "20",
        "--duration",
        "1",
        "--sites",
        "2",
        "--connections",
        "1",
        "--mode",
        "new-conn",
    ])
    .await;
    let seen = server.seen.lock().unwrap().clone();
    let sni: BTreeSet<String> = server.sni.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        sni,
        BTreeSet::from(["site1.example".to_owned(), "site2.example".to_owned()])
    );
    assert_eq!(summary["sent"], 20, "{summary}");
    assert_eq!(summary["completed"], seen.len() as u64, "{summary}");
    let tls = &summary["tls"];
    let (full, resumed) = (
        tls["full"].as_u64().unwrap(),
        tls["resumed"].as_u64().unwrap(),
    );
    assert_eq!(full + resumed, 20, "one handshake per request: {summary}");
    assert!(
        full >= 2,
        "at least one full handshake per SNI host: {summary}"
    );
    assert!(resumed > 0, "later connections resume: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_tls_with_ca_file() {
    let server = start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let target = format!("https://{}", server.addr);
    let summary = run_json(&[
        "synth",
        "--target",
        &target,
        "--ca-file",
        ca.to_str().unwrap(),
        "--host",
        "site1.example",
        "--rate",
        "20",
        "--duration",
        "1",
        "--connections",
        "1",
    ])
    .await;
    assert_eq!(summary["sent"], 20, "{summary}");
    assert_eq!(summary["completed"], 20, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    // keep-alive: one connection, one handshake
    let tls = &summary["tls"];
    assert_eq!(
        tls["full"].as_u64().unwrap() + tls["resumed"].as_u64().unwrap(),
        1,
        "{summary}"
    );
    assert_eq!(
        *server.sni.lock().unwrap(),
        vec!["site1.example".to_owned()]
    );
}
