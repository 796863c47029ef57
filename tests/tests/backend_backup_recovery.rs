//! Recovery from the backup: `edge-backend replay` re-publishes stored records,
//! and a wiped SQL store is rebuilt from them; plus the backup throughput bench.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::backup::*;

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

    // The target is explicit: without --topic replay is a usage error, and
    // the backed-up (live) topic itself needs --yes. Neither publishes.
    let refused = |extra: &[&str]| {
        let out = Command::new(bin("edge-backend"))
            .args(["replay", "--brokers", &s.broker.addr])
            .args(["--source-topic", s.topic])
            .args(&args)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = refused(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("required") && stderr.contains("--topic"),
        "{stderr}"
    );
    let (code, stderr) = refused(&["--topic", s.topic]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("refusing to replay into {:?}", s.topic))
            && stderr.contains("--yes"),
        "{stderr}"
    );
    assert!(!stderr.contains("records published"), "{stderr}");
    assert_eq!(
        s.broker
            .consume(s.topic, 31, Duration::from_secs(5))
            .await
            .len(),
        30,
        "a refused replay published nothing to the live topic"
    );
    let out = replay(s.topic, &["--yes", "--site", "site-a"]);
    assert!(out.contains("15 records published"), "{out}");
}

/// Throughput of the backup consumer (BENCHMARKS.md). Not part of the normal
/// run: `EDGE_BIN_DIR=target/release cargo test -p edge-tests --test
/// backend_backup_recovery -- --ignored --nocapture backup_throughput` after
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
