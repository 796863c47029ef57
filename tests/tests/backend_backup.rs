//! `edge-backend backup`, `verify` and `replay` against a real broker (Tansu),
//! the real edge binary, a local directory and a real S3-compatible server
//! (moto in server mode) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::backup::*;

#[tokio::test(flavor = "multi_thread")]
async fn local_backup_holds_every_record_once_and_verify_names_a_corrupt_object() {
    let s = setup("backup-local").await;
    let args = local_args(&s);
    let store = local_store(&s);
    let mut b = BackupProc::start(
        &s,
        &args,
        &[
            "--window-seconds",
            "2",
            "--grace-seconds",
            "0",
            "--max-object-bytes",
            "4096",
        ],
        &[],
        "backup",
    );
    send_events(&s.edge, 0, 60).await;
    // The next events fall into a later window.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    send_events(&s.edge, 60, 60).await;
    wait_stored(&store, &s, 120, &mut b).await;
    b.terminate();

    assert_backup_equals_topic(&s, &store, 120).await;
    let ms = manifests(&store, s.topic).await;
    let windows: BTreeSet<i64> = ms.iter().map(|m| m.window_start_ms).collect();
    assert!(windows.len() >= 2, "one window only: {windows:?}");
    assert!(
        ms.iter()
            .any(|m| m.cut == edge_backend::backup::window::CutReason::Size),
        "no object was cut by size"
    );
    assert!(ms.iter().all(|m| m.uncompressed_bytes <= 4096 + 600));
    let sites: u64 = ms.iter().map(|m| m.sites.get("site-a").unwrap_or(&0)).sum();
    assert_eq!(sites, 60);
    // Objects are under DATA_DIR/backup/<topic>/<day>/.
    let first = &ms[0].object;
    assert!(
        s.dir
            .path()
            .join("backend-data/backup")
            .join(first)
            .is_file()
    );

    let (ok, out) = run_verify(&args, &[]);
    assert!(ok, "verify failed on a clean backup:\n{out}");
    assert!(
        out.contains(&format!("{} objects, 120 records, 0 problems", ms.len())),
        "{out}"
    );

    // One flipped byte in one object.
    let victim = &ms[ms.len() / 2].object;
    let path = s.dir.path().join("backend-data/backup").join(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let (ok, out) = run_verify(&args, &[]);
    assert!(!ok, "verify passed a corrupt object:\n{out}");
    assert!(
        out.contains(&format!("FAILED {victim}: checksum mismatch")),
        "{out}"
    );
}

/// moto in server mode: `~/.local/moto` (scripts/install-deps), else `moto_server` on PATH.
fn moto_command() -> Command {
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = Path::new(&home).join(".local/moto/bin/moto_server");
    let exe = std::env::var("MOTO_SERVER")
        .map(PathBuf::from)
        .ok()
        .or_else(|| venv.is_file().then_some(venv))
        .or_else(|| {
            let found = Command::new("sh")
                .args(["-c", "command -v moto_server"])
                .output()
                .ok()?;
            found
                .status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()))
        })
        .unwrap_or_else(|| {
            panic!(
                "moto_server (S3-compatible test server) not found: run scripts/install-deps \
                 (installs it into ~/.local/moto) or set MOTO_SERVER"
            )
        });
    Command::new(exe)
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backup_against_a_real_s3_compatible_server() {
    let s = setup("backup-s3").await;
    let port = free_port();
    let moto = moto_command()
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.dir.path().join("moto.log")).unwrap())
        .spawn()
        .expect("cannot start moto_server: run scripts/install-deps");
    let _moto = ChildGuard(moto);
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    assert_eventually!(
        client.get(&endpoint).send().await.is_ok(),
        Duration::from_secs(30),
        "moto_server did not start: {}",
        std::fs::read_to_string(s.dir.path().join("moto.log")).unwrap_or_default()
    );
    let r = client
        .put(format!("{endpoint}/edge-backups"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());

    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let args: Vec<String> = vec![
        "--s3-bucket".into(),
        "edge-backups".into(),
        "--s3-endpoint".into(),
        endpoint.clone(),
    ];
    let store = BackupStore::open(&StoreConfig::S3(S3Config {
        bucket: "edge-backups".into(),
        prefix: "backup".into(),
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        session_token: None,
        allow_http: false,
    }))
    .unwrap();

    let mut b = BackupProc::start(
        &s,
        &args,
        &[
            "--window-seconds",
            "2",
            "--grace-seconds",
            "0",
            "--max-object-bytes",
            "8192",
        ],
        &env,
        "backup",
    );
    send_events(&s.edge, 0, 50).await;
    wait_stored(&store, &s, 50, &mut b).await;
    b.terminate();
    assert_backup_equals_topic(&s, &store, 50).await;

    // Keys live under the bucket's `backup/` prefix.
    let listing = client
        .get(format!(
            "{endpoint}/edge-backups?list-type=2&prefix=backup/backup-s3/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains(".records.zst</Key>"), "{listing}");

    let (ok, out) = run_verify(&args, &env);
    assert!(ok, "verify failed on a clean backup:\n{out}");
    assert!(out.contains("50 records, 0 problems"), "{out}");

    let ms = manifests(&store, s.topic).await;
    let victim = &ms[0].object;
    let mut bytes = store.get(victim).await.unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    store.put(victim, bytes).await.unwrap();
    let (ok, out) = run_verify(&args, &env);
    assert!(!ok, "verify passed a corrupt object:\n{out}");
    assert!(
        out.contains(&format!("FAILED {victim}: checksum mismatch")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_the_open_window_and_crashes_never_duplicate_records() {
    let s = setup("backup-crash").await;
    let args = local_args(&s);
    let store = local_store(&s);

    // 1. A day-long window: nothing is written until SIGTERM writes it.
    let mut b = BackupProc::start(
        &s,
        &args,
        &["--window-seconds", "86400", "--grace-seconds", "0"],
        &[],
        "backup-1",
    );
    send_events(&s.edge, 0, 40).await;
    assert_eventually!(
        b.log().contains("consumed=40 "),
        Duration::from_secs(60),
        "backup did not consume 40 records:\n{}",
        b.log()
    );
    assert_eq!(
        stored_count(&store, s.topic).await,
        0,
        "written before the window closed"
    );
    b.terminate();
    let ms = manifests(&store, s.topic).await;
    assert_eq!(ms.iter().map(|m| m.records).sum::<u64>(), 40);
    assert!(
        ms.iter()
            .all(|m| m.cut == edge_backend::backup::window::CutReason::Shutdown)
    );

    // 2. Crash between storing an object and committing its offset.
    let mut b = BackupProc::start(
        &s,
        &args,
        &[
            "--window-seconds",
            "1",
            "--grace-seconds",
            "0",
            "--max-object-bytes",
            "2048",
            "--abort-after-objects",
            "2",
        ],
        &[],
        "backup-2",
    );
    send_events(&s.edge, 40, 40).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = b.exited() {
            break st;
        }
        assert!(Instant::now() < deadline, "no abort:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(
        b.log().contains("aborting before the commit"),
        "{}",
        b.log()
    );
    drop(b);
    // The newest object is stored but its offset is not committed.
    let uncommitted = manifests(&store, s.topic)
        .await
        .into_iter()
        .max_by_key(|m| m.created_at_ms)
        .unwrap();

    // 3. Restart with another size limit (the rewrite cuts differently),
    //    kill -9 it mid-stream, restart again.
    let cut = [
        "--window-seconds",
        "1",
        "--grace-seconds",
        "0",
        "--max-object-bytes",
        "3000",
    ];
    let mut b = BackupProc::start(&s, &args, &cut, &[], "backup-3");
    let before = manifests(&store, s.topic).await.len();
    let sender = {
        let edge_http = s.edge.ports.http;
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 80..160usize {
                let host = if i % 2 == 0 { "a.test" } else { "b.test" };
                let r = client
                    .post(format!("http://{edge_http}/api/event"))
                    .header("host", host)
                    .header("user-agent", UA)
                    .body(format!(
                        r#"{{"name":"pageview","url":"https://{host}/k/{i}"}}"#
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifests(&store, s.topic).await.len() < before + 3 {
        assert!(Instant::now() < deadline, "no new objects:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.kill9();
    let mut b = BackupProc::start(&s, &args, &cut, &[], "backup-4");
    sender.await.unwrap();
    wait_stored(&store, &s, 160, &mut b).await;
    b.terminate();

    assert_backup_equals_topic(&s, &store, 160).await;
    // The uncommitted object was rewritten under the same name (the run
    // after the crash started at its first offset), not duplicated.
    let rewritten = manifests(&store, s.topic)
        .await
        .into_iter()
        .find(|m| m.object == uncommitted.object)
        .expect("the uncommitted object's name is gone");
    assert!(rewritten.created_at_ms > uncommitted.created_at_ms);
    assert_eq!(rewritten.first_offset, uncommitted.first_offset);
    let (ok, out) = run_verify(&args, &[]);
    assert!(ok, "verify after crashes:\n{out}");
    assert!(out.contains("160 records, 0 problems"), "{out}");
}

/// The store fails for a while (a regular file where the topic's directory
/// must go: `mkdir` fails with ENOTDIR, also for root, unlike a chmod), then
/// recovers: the backup keeps running, logs why each write failed, retries
/// with backoff and in the end holds every record exactly once. Its
/// `--http` endpoint shows the failure as it happens (what the shipped
/// alerts read) and the recovery after it, and refuses a foreign `Host`.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_store_is_retried_with_its_cause_and_every_record_is_stored_once() {
    let s = setup("backup-faults").await;
    let args = local_args(&s);
    let blocker = s.dir.path().join("backend-data/backup").join(s.topic);
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a directory").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut b = BackupProc::start(
        &s,
        &args,
        &[
            "--window-seconds",
            "1",
            "--grace-seconds",
            "0",
            "--http",
            &http,
        ],
        &[],
        "backup",
    );
    let scrape = || async {
        let r = reqwest::get(format!("http://{http}/metrics")).await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    };
    send_events(&s.edge, 0, 40).await;
    assert_eventually!(
        {
            assert!(b.exited().is_none(), "backup exited:\n{}", b.log());
            b.log()
                .matches("backup: cannot store the object; retrying")
                .count()
                >= 3
        },
        Duration::from_secs(60),
        "no retried store failure:\n{}",
        b.log()
    );
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("cannot store the object"))
        .unwrap();
    // The cause, not just "storing …": the OS error at the end of the chain.
    assert!(line.contains("os error"), "{line}");
    assert!(line.contains("retry_in_ms"), "{line}");

    // While the store fails: the errors, the retry delay, the records
    // pending and an age that grows from one scrape to the next.
    let failing = scrape().await.expect("no /metrics while the store fails");
    assert!(
        parse_metric(&failing, "edge_backup_store_errors_total", &[]) >= 3.0,
        "{failing}"
    );
    assert!(
        parse_metric(&failing, "edge_backup_retry_delay_seconds", &[]) > 0.0,
        "{failing}"
    );
    // The loop stops taking records while it retries a store, so how many
    // it took depends on where the window boundary fell; all are pending.
    let consumed = parse_metric(&failing, "edge_backup_records_consumed_total", &[]);
    assert!(consumed >= 1.0, "{failing}");
    assert_eq!(
        parse_metric(&failing, "edge_backup_pending_records", &[]),
        consumed,
        "{failing}"
    );
    assert_eq!(
        parse_metric(&failing, "edge_backup_records_stored_total", &[]),
        0.0,
        "{failing}"
    );
    assert_eq!(
        parse_metric(&failing, "edge_backup_window_seconds", &[]),
        1.0,
        "{failing}"
    );
    assert_eq!(
        parse_metric(&failing, "edge_backup_assigned_partitions", &[]),
        3.0,
        "{failing}"
    );
    let age = |text: &str| parse_metric(text, "edge_backup_oldest_pending_record_age_seconds", &[]);
    let first_age = age(&failing);
    assert!(first_age > 0.0, "{failing}");
    assert_eventually!(
        scrape().await.is_some_and(|t| age(&t) > first_age),
        Duration::from_secs(30),
        "the pending age does not grow while the store fails"
    );
    // Not for other Hosts (DNS rebinding) or web pages.
    let client = reqwest::Client::new();
    let foreign = client
        .get(format!("http://{http}/metrics"))
        .header("host", "rebind.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421);

    std::fs::remove_file(&blocker).unwrap();
    send_events(&s.edge, 40, 20).await;
    let store = local_store(&s);
    wait_stored(&store, &s, 60, &mut b).await;
    assert_eventually!(
        scrape().await.is_some_and(|t| {
            parse_metric(&t, "edge_backup_records_stored_total", &[]) == 60.0
                && parse_metric(&t, "edge_backup_pending_records", &[]) == 0.0
                && parse_metric(&t, "edge_backup_retry_delay_seconds", &[]) == 0.0
                && age(&t) == 0.0
                && parse_metric(&t, "edge_backup_last_stored_timestamp_seconds", &[]) > 0.0
                && parse_metric(
                    &t,
                    "edge_backup_http_refused_total",
                    &[("reason", "foreign_host")],
                ) == 1.0
        }),
        Duration::from_secs(30),
        "metrics after the recovery:\n{}",
        or_no_answer(scrape().await)
    );
    b.terminate();
    assert_backup_equals_topic(&s, &store, 60).await;
    let (ok, out) = run_verify(&args, &[]);
    assert!(ok, "{out}");
}

fn or_no_answer(t: Option<String>) -> String {
    t.unwrap_or_else(|| "(no answer)".into())
}
