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
    // stderr is a file, not a terminal: the logs must carry no colour codes.
    let stderr_path = dir.path().join("stderr.log");
    let mut child = ChildGuard(
        Command::new(bin("edge"))
            .args(["dev", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
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
    // The banner's command runs as printed: the built binary's path, since
    // `edge-backend` is not on the PATH after a cargo build.
    let stats_line = format!("{} stats --data-dir", bin("edge-backend").display());
    assert!(
        seen.iter().any(|l| l.trim_start().starts_with(&stats_line)),
        "banner prints the stats command as {stats_line}: {seen:?}"
    );

    // Ctrl-C (SIGINT) stops it gracefully: the in-process backup writes the
    // open window, still encrypted, under DATA_DIR/backup.
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
            stopped.elapsed() < Duration::from_secs(15),
            "edge dev did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The consumers stop before the embedded broker: no ERROR line on the way
    // out (issue 17 §4). Positive control: the log was captured, in plain text.
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        log.contains("edge starting") && log.contains("INFO"),
        "stderr was not captured:\n{log}"
    );
    assert!(!log.contains('\x1b'), "ANSI colour codes in a file:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "ERROR lines on Ctrl-C:\n{}",
        errors.join("\n")
    );
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

/// `edge dev` hands over to the `edge-dev` binary beside `edge`; without it,
/// it says what is missing and how to build it.
#[test]
fn edge_dev_without_the_dev_binary_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("edge");
    std::fs::copy(bin("edge"), &lone).unwrap();
    let out = Command::new(&lone)
        .args(["dev", "--data-dir"])
        .arg(dir.path().join("dev"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("edge-dev").display().to_string())
            && stderr.contains("cargo build --release -p edge-dev"),
        "{stderr}"
    );
    assert!(!dir.path().join("dev").exists(), "nothing was generated");
}
