//! `edge-backend backup` through a broker freeze (issue 13 §5): the broker
//! (Tansu) is SIGSTOPped for 20 s while records flow, then SIGCONTed; the
//! backup must go on storing and in the end hold every record of the topic
//! exactly once.
//!
//! The freeze is shorter than the backup's group session (librdkafka's
//! default 45 s). A freeze longer than the session makes Tansu 0.6 keep the
//! expired member as the group's leader forever (its late heartbeat removes
//! it from the members but not from the leader slot; every later join is
//! told to wait for that leader), so no consumer of the group is assigned a
//! partition again until the broker's group state is gone — a restart of
//! the backup does not help (docs/backup.md "Broker stalls").
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::backup::*;

const TOPIC: &str = "freeze-events";
const GROUP: &str = "freeze-backup";

/// Produces ~`rate` records/s (keys cycle over three sites) until `stop`;
/// returns how many the broker acknowledged. A failed delivery fails the test.
async fn produce_until(broker: String, rate: u64, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .set("acks", "all")
        .set("linger.ms", "5")
        // Far longer than the freeze: nothing may fail, only wait.
        .set("message.timeout.ms", "300000")
        .create()
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
    let mut pending = tokio::task::JoinSet::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let p = producer.clone();
        let acked = acked.clone();
        let site = ["site-a", "site-b", "site-c"][(i % 3) as usize];
        let payload = format!("record {i} of {site}: {}", "x".repeat(200));
        pending.spawn(async move {
            p.send(
                FutureRecord::to(TOPIC).key(site).payload(&payload),
                Duration::from_secs(300),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
            acked.fetch_add(1, Ordering::SeqCst);
        });
        i += 1;
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
    }
}

/// Every record on the topic, read to the end of each partition:
/// (partition, offset) pairs.
async fn topic_contents(broker: &Broker, partitions: usize) -> BTreeSet<(i32, i64)> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("freeze-read-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let mut out = BTreeSet::new();
    let mut at_end = BTreeSet::new();
    while at_end.len() < partitions {
        match tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .expect("no record nor end of partition within 60 s")
        {
            Ok(m) => {
                out.insert((m.partition(), m.offset()));
                at_end.remove(&m.partition());
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
            }
            Err(e) => panic!("consume failed: {e}"),
        }
    }
    out
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_resumes_after_a_broker_freeze_and_stores_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    let data = dir.path().join("backup-data");
    let log = dir.path().join("backup.log");
    let mut backup = ChildGuard(
        Command::new(bin("edge-backend"))
            .args(["backup", "--brokers", &broker.addr, "--topic", TOPIC])
            .args(["--group", GROUP])
            .args(["--window-seconds", "1", "--grace-seconds", "0"])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "info,edge_backend=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let store = BackupStore::open(&StoreConfig::Local {
        data_dir: data.clone(),
    })
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let producing = tokio::spawn(produce_until(
        broker.addr.clone(),
        200,
        stop.clone(),
        acked.clone(),
    ));

    // Positive control: the backup stores while the broker runs.
    assert_eventually!(
        stored_count(&store, TOPIC).await >= 300,
        Duration::from_secs(90),
        "the backup stored nothing before the freeze:\n{}",
        log_of(&log)
    );

    // The fault: a 20 s freeze (the duration is the fault, not a wait).
    broker.pause();
    let paused = Instant::now();
    assert_eventually!(
        paused.elapsed() >= Duration::from_secs(20),
        Duration::from_secs(21),
        "pause"
    );
    broker.resume();
    eprintln!("broker frozen for {:?}", paused.elapsed());
    let at_resume = stored_count(&store, TOPIC).await;

    // More records after the freeze, then the producer stops.
    let produced_at_resume = acked.load(Ordering::SeqCst);
    assert_eventually!(
        acked.load(Ordering::SeqCst) >= produced_at_resume + 600,
        Duration::from_secs(120),
        "the producer did not recover after the freeze"
    );
    stop.store(true, Ordering::SeqCst);
    producing.await.unwrap();
    let produced = acked.load(Ordering::SeqCst);

    // Everything on the topic ends up in the backup.
    let on_topic = topic_contents(&broker, 3).await;
    assert!(
        on_topic.len() as u64 >= produced,
        "{} < {produced}",
        on_topic.len()
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = stored_count(&store, TOPIC).await;
        if got >= on_topic.len() as u64 {
            break;
        }
        if let Some(status) = backup.0.try_wait().unwrap() {
            panic!("backup exited ({status}):\n{}", log_of(&log));
        }
        assert!(
            Instant::now() < deadline,
            "backup stalled after the freeze: {got} of {} stored ({at_resume} at resume):\n{}",
            on_topic.len(),
            log_of(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut stored = BTreeSet::new();
    for m in manifests(&store, TOPIC).await {
        let bytes = store.get(&m.object).await.unwrap();
        for r in m.check_object(&bytes).unwrap() {
            assert!(
                stored.insert((r.partition, r.offset)),
                "{}/{} stored twice",
                r.partition,
                r.offset
            );
        }
    }
    assert_eq!(stored, on_topic, "backup != topic");
    eprintln!(
        "{} records produced, {} on the topic, all stored once ({at_resume} stored at resume)",
        produced,
        on_topic.len()
    );

    let text = log_of(&log);
    assert!(
        !text.contains("session lost"),
        "the group session expired during a freeze shorter than it:\n{text}"
    );
    let _ = backup.0.kill();
}
