//! Shared setup of the backup tests: a broker, an edge, the backup process
//! and readers of what it stored.

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, ExitStatus, Stdio};
pub use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use edge_backend::backup::catalog;
pub use edge_backend::backup::frame::BackupRecord;
pub use edge_backend::backup::manifest::Manifest;
pub use edge_backend::backup::store::{BackupStore, S3Config, StoreConfig};
pub use edge_tests::*;

pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub key: BackendKey,
    pub edge: Edge,
    pub topic: &'static str,
}

pub async fn setup(topic: &'static str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 3).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let cert = TestCa::new().issue(dir.path(), "a", &["a.test", "b.test"]);
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .data_dir(dir.path().join("edge-data"))
        .cert(cert)
        .site("site-a", &["a.test"])
        .site("site-b", &["b.test"])
        .start()
        .await;
    Setup {
        dir,
        broker,
        key,
        edge,
        topic,
    }
}

/// Sends `n` page views over plain HTTP, alternating between the two sites.
pub async fn send_events(edge: &Edge, from: usize, n: usize) {
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

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `edge-backend backup` with its log file.
pub struct BackupProc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl BackupProc {
    pub fn start(
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
    pub fn log(&self) -> String {
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

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM, then waits; panics with the log if it does not exit cleanly.
    pub fn terminate(&mut self) {
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
    pub fn kill9(&mut self) {
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
pub async fn manifests(store: &BackupStore, topic: &str) -> Vec<Manifest> {
    let cat = catalog::load(store, Some(topic)).await.unwrap();
    cat.manifests
        .into_iter()
        .map(|(k, m)| m.unwrap_or_else(|e| panic!("{k}: {e}")))
        .collect()
}

/// Sum of records over the manifests (0 if the store cannot be read yet).
pub async fn stored_count(store: &BackupStore, topic: &str) -> u64 {
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
pub async fn stored_records(store: &BackupStore, topic: &str) -> Vec<BackupRecord> {
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
pub async fn assert_backup_equals_topic(s: &Setup, store: &BackupStore, n: usize) {
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

pub fn local_args(s: &Setup) -> Vec<String> {
    vec![
        "--data-dir".into(),
        s.dir.path().join("backend-data").display().to_string(),
    ]
}

pub fn local_store(s: &Setup) -> BackupStore {
    BackupStore::open(&StoreConfig::Local {
        data_dir: s.dir.path().join("backend-data"),
    })
    .unwrap()
}

/// Runs `edge-backend verify`; returns (success, stdout).
pub fn run_verify(store_args: &[String], env: &[(&str, &str)]) -> (bool, String) {
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

pub async fn wait_stored(store: &BackupStore, s: &Setup, n: u64, b: &mut BackupProc) {
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
