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

    // The in-process aggregator has rolled the event up into SQLite under
    // the data dir, where `edge-backend stats` (the banner's command) reads it.
    let stats = || {
        let out = Command::new(bin("edge-backend"))
            .args(["stats", "--site", "localhost", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    assert_eventually!(
        stats().is_some_and(|v| v["totals"]["pageviews"] == 1),
        Duration::from_secs(20),
        "edge-backend stats did not show the pageview: {:?}",
        stats()
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("edge-backend stats --data-dir")),
        "banner prints the stats command"
    );

    // SIGTERM stops it gracefully: the in-process backup writes the open
    // window, still encrypted, under DATA_DIR/backup.
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "edge dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut objects = Vec::new();
    let mut stack = vec![data.join("backup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".records.zst") {
                objects.push(path);
            }
        }
    }
    assert_eq!(objects.len(), 1, "one backup window file: {objects:?}");
    let verify = Command::new(bin("edge-backend"))
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
