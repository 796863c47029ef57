//! `edge-backend backup`, `verify` and `replay` against a real broker (Tansu),
//! the real edge binary, a local directory and a real S3-compatible server
//! (moto in server mode) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_backend::backup::catalog;
use edge_backend::backup::frame::BackupRecord;
use edge_backend::backup::manifest::Manifest;
use edge_backend::backup::store::{BackupStore, S3Config, StoreConfig};
use edge_tests::*;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    key: BackendKey,
    edge: Edge,
    topic: &'static str,
}

async fn setup(topic: &'static str) -> Setup {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 3).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let certs = vec![ca.issue(dir.path(), "a", &["a.test", "b.test"])];
    let ports = EdgePorts::pick();
    let config = edge_config(
        &ports,
        &dir.path().join("edge-data"),
        &broker.addr,
        topic,
        &key,
        &certs,
        &[
            SiteSpec {
                id: "site-a",
                domains: &["a.test"],
            },
            SiteSpec {
                id: "site-b",
                domains: &["b.test"],
            },
        ],
        "",
    );
    let edge = Edge::start(dir.path(), ports, &config).await;
    Setup {
        dir,
        broker,
        key,
        edge,
        topic,
    }
}

/// Sends `n` page views over plain HTTP, alternating between the two sites.
async fn send_events(edge: &Edge, from: usize, n: usize) {
    let client = reqwest::Client::new();
    for i in from..from + n {
        let host = if i % 2 == 0 { "a.test" } else { "b.test" };
        let r = client
            .post(format!("http://{}/api/event", edge.ports.http))
            .header("host", host)
            .header("user-agent", UA)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"name":"pageview","url":"https://{host}/page/{i}"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "event {i}: {}", r.text().await.unwrap());
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `edge-backend backup` with its log file.
struct BackupProc {
    child: Option<Child>,
    log: PathBuf,
}

impl BackupProc {
    fn start(
        s: &Setup,
        store_args: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
        name: &str,
    ) -> BackupProc {
        let log = s.dir.path().join(format!("{name}.log"));
        let child = Command::new(bin("edge-backend"))
            .args(["backup", "--brokers", &s.broker.addr, "--topic", s.topic])
            .args(["--group", "backup-test"])
            // A killed member must not hold its partitions for the default 45 s.
            .args(["--property", "session.timeout.ms=6000"])
            .args(["--property", "heartbeat.interval.ms=500"])
            .args(store_args)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "edge_backend=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        BackupProc {
            child: Some(child),
            log,
        }
    }

    /// The log so far, without ANSI colour sequences.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM, then waits; panics with the log if it does not exit cleanly.
    fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "backup exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("backup did not stop within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to write anything.
    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for BackupProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every manifest of the topic (panics on an unreadable one).
async fn manifests(store: &BackupStore, topic: &str) -> Vec<Manifest> {
    let cat = catalog::load(store, Some(topic)).await.unwrap();
    cat.manifests
        .into_iter()
        .map(|(k, m)| m.unwrap_or_else(|e| panic!("{k}: {e}")))
        .collect()
}

/// Sum of records over the manifests (0 if the store cannot be read yet).
async fn stored_count(store: &BackupStore, topic: &str) -> u64 {
    match catalog::load(store, Some(topic)).await {
        Ok(cat) => cat
            .manifests
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok())
            .map(|m| m.records)
            .sum(),
        Err(_) => 0,
    }
}

/// Every record of every object, each object checked against its manifest.
async fn stored_records(store: &BackupStore, topic: &str) -> Vec<BackupRecord> {
    let mut out = Vec::new();
    for m in manifests(store, topic).await {
        let bytes = store.get(&m.object).await.unwrap();
        out.extend(
            m.check_object(&bytes)
                .unwrap_or_else(|p| panic!("{}: {p:?}", m.object)),
        );
    }
    out
}

/// Asserts the store holds exactly the records on the topic: each
/// (partition, offset) once, with identical key, value and headers.
async fn assert_backup_equals_topic(s: &Setup, store: &BackupStore, n: usize) {
    let on_kafka = s.broker.consume(s.topic, n, Duration::from_secs(30)).await;
    assert_eq!(on_kafka.len(), n, "records on the topic");
    let backed_up = stored_records(store, s.topic).await;
    assert_eq!(backed_up.len(), n, "records in the backup (duplicates?)");
    let mut by_pos: BTreeMap<(i32, i64), &BackupRecord> = BTreeMap::new();
    for r in &backed_up {
        assert_eq!(r.topic, s.topic);
        assert!(
            by_pos.insert((r.partition, r.offset), r).is_none(),
            "{}/{} stored twice",
            r.partition,
            r.offset
        );
        assert!(r.headers.is_empty(), "the edge sends no headers");
        assert!(r.timestamp.millis().is_some());
    }
    for k in &on_kafka {
        let b = by_pos
            .get(&(k.partition, k.offset))
            .unwrap_or_else(|| panic!("{}/{} missing from the backup", k.partition, k.offset));
        assert_eq!(b.key.as_deref(), Some(&k.key[..]));
        assert_eq!(
            b.value.as_deref(),
            Some(&k.payload[..]),
            "value not byte-identical"
        );
    }
}

fn local_args(s: &Setup) -> Vec<String> {
    vec![
        "--data-dir".into(),
        s.dir.path().join("backend-data").display().to_string(),
    ]
}

fn local_store(s: &Setup) -> BackupStore {
    BackupStore::open(&StoreConfig::Local {
        data_dir: s.dir.path().join("backend-data"),
    })
    .unwrap()
}

/// Runs `edge-backend verify`; returns (success, stdout).
fn run_verify(store_args: &[String], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(bin("edge-backend"))
        .arg("verify")
        .args(store_args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify failed to run:\n{stdout}\n{stderr}"
        );
    }
    (out.status.success(), format!("{stdout}{stderr}"))
}

async fn wait_stored(store: &BackupStore, s: &Setup, n: u64, b: &mut BackupProc) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = stored_count(store, s.topic).await;
        if got >= n {
            return;
        }
        if let Some(status) = b.exited() {
            panic!("backup exited early ({status}):\n{}", b.log());
        }
        if Instant::now() > deadline {
            panic!("only {got} of {n} records stored in 90 s:\n{}", b.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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

#[tokio::test(flavor = "multi_thread")]
async fn replay_republishes_records_that_decrypt_with_the_backend_key() {
    let s = setup("backup-replay").await;
    let args = local_args(&s);
    let store = local_store(&s);
    let started = now_secs();
    let mut b = BackupProc::start(&s, &args, &["--window-seconds", "60"], &[], "backup");
    send_events(&s.edge, 0, 30).await;
    // Nothing is written before the window ends: SIGTERM writes it.
    assert_eventually!(
        b.log().contains("consumed=30 "),
        Duration::from_secs(60),
        "backup did not consume 30 records:\n{}",
        b.log()
    );
    b.terminate();
    assert_eq!(stored_count(&store, s.topic).await, 30);
    let originals = s.broker.consume(s.topic, 30, Duration::from_secs(30)).await;
    assert_eq!(originals.len(), 30);

    let replay = |target: &str, extra: &[&str]| {
        let out = Command::new(bin("edge-backend"))
            .args(["replay", "--brokers", &s.broker.addr])
            .args(["--source-topic", s.topic, "--topic", target])
            .args(&args)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "replay failed: {stderr}");
        stderr
    };
    let from = (started - 60).to_string();
    let to = (now_secs() + 60).to_string();

    s.broker.create_topic("replayed", 3).await;
    let out = replay("replayed", &["--from", &from, "--to", &to]);
    assert!(out.contains("30 records published"), "{out}");
    let replayed = s
        .broker
        .consume("replayed", 30, Duration::from_secs(30))
        .await;
    assert_eq!(replayed.len(), 30);
    let pairs = |rs: &[Record]| {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = rs
            .iter()
            .map(|r| (r.key.clone(), r.payload.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(pairs(&replayed), pairs(&originals));
    let opener = s.key.opener();
    for r in &replayed {
        let site = String::from_utf8(r.key.clone()).unwrap();
        let event = opener
            .open(&site, &r.payload)
            .unwrap_or_else(|e| panic!("replayed record does not decrypt: {e}"));
        assert_eq!(event.name, "pageview");
    }

    // One site only.
    s.broker.create_topic("replayed-b", 1).await;
    let out = replay("replayed-b", &["--site", "site-b"]);
    assert!(out.contains("15 records published"), "{out}");
    let only_b = s
        .broker
        .consume("replayed-b", 16, Duration::from_secs(8))
        .await;
    assert_eq!(only_b.len(), 15);
    assert!(only_b.iter().all(|r| r.key == b"site-b"));

    // A time range with nothing in it.
    let later = (now_secs() + 3600).to_string();
    let out = replay("replayed-b", &["--from", &later]);
    assert!(out.contains("0 records published"), "{out}");
}

/// Throughput of the backup consumer (BENCHMARKS.md). Not part of the normal
/// run: `EDGE_BIN_DIR=target/release cargo test -p edge-tests --test
/// backend_backup -- --ignored --nocapture backup_throughput` after
/// `cargo build --release -p edge-backend`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn backup_throughput() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    const N: u64 = 200_000;
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("bench", 3).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    // Envelope-like values: a 109-byte header shared per data key, then a
    // counter nonce and 227 bytes of ciphertext-like noise (348 bytes).
    let header: Vec<u8> = (0..109u32).map(|i| (i * 37 % 251) as u8).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..N {
        let mut value = header.clone();
        value.extend_from_slice(&[0; 4]);
        value.extend_from_slice(&i.to_be_bytes());
        for _ in 0..227 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            value.push(x as u8);
        }
        let key = format!("site-{}", i % 10);
        let f = producer
            .send_result(FutureRecord::to("bench").key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
        pending.push_back(f);
        if pending.len() > 50_000 {
            pending.pop_front().unwrap().await.unwrap().unwrap();
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    eprintln!(
        "produced {N} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let data_dir = dir.path().join("data");
    let store = BackupStore::open(&StoreConfig::Local {
        data_dir: data_dir.clone(),
    })
    .unwrap();
    let log = dir.path().join("bench.log");
    let child = Command::new(bin("edge-backend"))
        .args(["backup", "--brokers", &broker.addr, "--topic", "bench"])
        .args(["--window-seconds", "1", "--grace-seconds", "0"])
        .args(["--max-object-bytes", "8388608", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "edge_backend=info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("partitions assigned")
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    while stored_count(&store, "bench").await < N {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let ms = manifests(&store, "bench").await;
    let stored: u64 = ms.iter().map(|m| m.object_bytes).sum();
    let raw: u64 = ms.iter().map(|m| m.uncompressed_bytes).sum();
    eprintln!(
        "backup: {N} records stored and committed in {secs:.2} s = {:.0} records/s; \
         {} objects, {:.1} MB framed, {:.1} MB stored (zstd ratio {:.2})",
        N as f64 / secs,
        ms.len(),
        raw as f64 / 1e6,
        stored as f64 / 1e6,
        raw as f64 / stored as f64
    );
}

/// Disaster recovery, end to end: the rollups an aggregator built from the
/// live topic are rebuilt identically, into a wiped (new, empty) SQL store,
/// from nothing but the backup replayed into a fresh topic.
#[tokio::test(flavor = "multi_thread")]
async fn wiped_store_rebuilt_from_the_backup_has_identical_rollups() {
    let s = setup("backup-dr").await;
    s.broker.create_topic("dr-dlq", 1).await;
    let args = local_args(&s);
    let started_ms = (now_secs() as i64 - 3_600) * 1_000;
    let mut b = BackupProc::start(&s, &args, &["--window-seconds", "60"], &[], "backup");
    send_events(&s.edge, 0, 30).await;
    assert_eventually!(
        b.log().contains("consumed=30 "),
        Duration::from_secs(60),
        "backup did not consume 30 records:\n{}",
        b.log()
    );
    b.terminate();

    // Each aggregator gets its own group: a killed member of a shared group
    // would hold its partitions until the broker's session timeout.
    let aggregate = |topic: &str, data: &Path| {
        ChildGuard(
            Command::new(bin("edge-backend"))
                .args(["aggregate", "--brokers", &s.broker.addr, "--topic", topic])
                .args(["--group", &format!("dr-{topic}")])
                .arg("--keys")
                .arg(&s.key.private_key_path)
                .arg("--data-dir")
                .arg(data)
                .args(["--dlq-topic", "dr-dlq", "--batch-wait-ms", "50"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let report = |data: &Path, site: &str| -> Option<serde_json::Value> {
        let out = Command::new(bin("edge-backend"))
            .args([
                "stats", "--site", site, "--bucket", "minute", "--limit", "100",
            ])
            .args(["--from", &started_ms.to_string(), "--to", "now-0s"])
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    let total = |data: &Path| {
        ["site-a", "site-b"]
            .iter()
            .filter_map(|site| report(data, site))
            .map(|r| r["totals"]["pageviews"].as_i64().unwrap_or(0))
            .sum::<i64>()
    };

    // The live store.
    let live = s.dir.path().join("live-sql");
    let live_aggregator = aggregate(s.topic, &live);
    assert_eventually!(
        total(&live) == 30,
        Duration::from_secs(60),
        "live aggregator did not reach 30 pageviews"
    );
    drop(live_aggregator);

    // Disaster: the SQL store is gone. Replay the backup into a fresh topic
    // and rebuild into a new, empty store.
    s.broker.create_topic("restored", 3).await;
    let out = Command::new(bin("edge-backend"))
        .args(["replay", "--brokers", &s.broker.addr])
        .args(["--source-topic", s.topic, "--topic", "restored"])
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    assert!(stderr.contains("30 records published"), "{stderr}");
    let rebuilt = s.dir.path().join("rebuilt-sql");
    let rebuilt_aggregator = aggregate("restored", &rebuilt);
    assert_eventually!(
        total(&rebuilt) == 30,
        Duration::from_secs(60),
        "rebuilt aggregator did not reach 30 pageviews"
    );
    drop(rebuilt_aggregator);

    for site in ["site-a", "site-b"] {
        let (mut before, mut after) = (
            report(&live, site).unwrap(),
            report(&rebuilt, site).unwrap(),
        );
        // Only the echo of the query's own "to = now" may differ.
        for r in [&mut before, &mut after] {
            r.as_object_mut().unwrap().remove("to");
        }
        assert_eq!(before, after, "{site}: rollups differ after the rebuild");
        assert_eq!(before["totals"]["pageviews"], 15);
    }
}
