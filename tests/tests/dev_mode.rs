//! `edge dev`: the newcomer's first command, end to end on its default ports.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn dev_serves_https_and_prints_the_decrypted_event() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let mut child = ChildGuard(
        Command::new(bin("edge"))
            .args(["dev", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    assert_eventually!(
        reqwest::get("http://127.0.0.1:9901/readyz")
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false),
        Duration::from_secs(30),
        "edge dev did not become ready"
    );
    // `curl -k`: the dev certificate is self-signed.
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .resolve("localhost", "127.0.0.1:8443".parse().unwrap())
        .build()
        .unwrap();
    let r = client
        .post("https://localhost:8443/api/event")
        .header("content-type", "application/json")
        .body(r#"{"name":"pageview","url":"https://localhost/some/path","referrer":"https://example.org/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) if line.starts_with('{') => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                break v;
            }
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => panic!(
                "no decrypted event printed; output was:\n{}",
                seen.join("\n")
            ),
        }
    };
    assert_eq!(event["site"], "localhost");
    assert_eq!(event["event"]["url"], "https://localhost/some/path");
    assert_eq!(event["event"]["referrer"], "https://example.org/");
    assert!(
        seen.iter().any(|l| l.contains("curl")),
        "banner prints what to curl"
    );

    // Generated secrets are private.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(data.join("keys")).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let mode = std::fs::metadata(data.join("tls/localhost.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Ctrl-C stops it within a few seconds.
    Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "edge dev did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
