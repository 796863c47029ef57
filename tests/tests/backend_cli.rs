//! `edge-backend` commands as a shell user runs them: output piped into a
//! reader that stops early (`| head`) ends the command quietly instead of
//! panicking on the closed pipe.

use std::io::Read;
use std::process::{Command, Stdio};

use edge_tests::bin;

#[test]
fn stats_piped_into_a_reader_that_closes_early_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("edge-backend"))
        .args([
            "stats",
            "--site",
            "example.com",
            "--bucket",
            "minute",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes anything (`| head -0`).
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "stats panicked: {stderr}");
    assert!(status.success(), "stats failed ({status}): {stderr}");
}

#[test]
fn stats_prints_its_report_when_the_reader_stays() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("edge-backend"))
        .args([
            "stats",
            "--site",
            "example.com",
            "--bucket",
            "minute",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totals"]["pageviews"], 0, "{report}");
}
