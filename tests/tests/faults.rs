//! The fault-accounting scenario (issue 13 §5), with real processes only:
//! Tansu, the `edge` binary, `edge-backend aggregate` on PostgreSQL and
//! `edge-backend backup` to a local directory, under fixed-rate load from
//! `edge-loadtest synth` (50 source addresses). While the load runs, the
//! aggregator is `kill -9`ed and restarted and the broker is SIGSTOPped for
//! 30 s; between load runs the edge is SIGTERMed and restarted, then
//! `kill -9`ed and restarted. Afterwards, exactly:
//! 2xx answers == distinct event ids in Kafka == events in the aggregate ==
//! distinct event ids in the backup, and `edge-backend audit` accounts for
//! every backed-up record (duplicates are exactly Kafka records − distinct ids).
//!
//! No load run straddles an edge restart, so every 2xx is counted exactly and
//! no request fails for lack of an edge.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::aggregate::*;
use support::backup::{BackupStore, StoreConfig, stored_count};

const TOPIC: &str = "faults-events";
const SITES_N: [&str; 2] = ["s1", "s2"];
const HOSTS: [&str; 2] = ["site1.example", "site2.example"];
/// Load rate, events per second (one event per request).
const RATE: u64 = 500;
/// `session.timeout.ms` of the backup (librdkafka's default): longer than
/// the 30 s freeze. A group whose leader's session expires during a stall is
/// never formed again by Tansu 0.6 (docs/backup.md "Broker stalls"), so the
/// backup must ride the freeze out. The aggregator keeps the support's 6 s
/// (its killed member must free the partitions fast); it is restarted during
/// the freeze, so it has no session that could expire in it.
const SESSION_MS: u64 = 45_000;

/// Runs `edge-loadtest synth` for `seconds` at [`RATE`]; returns its JSON summary.
async fn synth(target: String, seconds: u64, seed: u64) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin("edge-loadtest"))
            .args(["synth", "--target", &target])
            .args([
                "--rate",
                &RATE.to_string(),
                "--duration",
                &seconds.to_string(),
            ])
            .args(["--sites", "2", "--ips", "50"])
            .args([
                "--client-ip-mode",
                "bind",
                "--source-ips",
                "127.0.0.2-127.0.0.51",
            ])
            .args(["--connections", "32", "--seed", &seed.to_string()])
            .args(["--json", "--quiet"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "edge-loadtest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// Checks one load run: every request answered, none 5xx, none failed;
/// returns its 2xx count.
fn accepted_in(summary: &serde_json::Value, phase: &str) -> u64 {
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent > 0, "{phase}: {summary}");
    assert_eq!(
        summary["completed"].as_u64().unwrap(),
        sent,
        "{phase}: {summary}"
    );
    assert_eq!(
        summary["status"]["5xx"], 0,
        "{phase}: 5xx answers: {summary}"
    );
    assert_eq!(summary["errors"], 0, "{phase}: {summary}");
    assert_eq!(summary["timeouts"], 0, "{phase}: {summary}");
    let s2xx = summary["status"]["2xx"].as_u64().unwrap();
    assert_eq!(s2xx, sent, "{phase}: not every event accepted: {summary}");
    eprintln!("{phase}: {sent} sent, {s2xx} 2xx");
    s2xx
}

fn kill(signal: &str, pid: u32) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success(),
        "kill {signal} {pid}"
    );
}

async fn accepted_metric(edge: &Edge) -> f64 {
    edge.metric("edge_events_total", &[("outcome", "accepted")])
        .await
}

struct World {
    dir: tempfile::TempDir,
    ports: EdgePorts,
    config: String,
    ca: TestCa,
}

impl World {
    /// Starts the edge and measures from spawn to: ready, a 202 over plain
    /// HTTP, and a completed TLS handshake (+ 202) for every certificate's
    /// names. Returns the edge and the two probe events it accepted.
    async fn start_edge(&self, what: &str) -> (Edge, u64) {
        let spawned = Instant::now();
        let edge = Edge::start(self.dir.path(), self.ports, &self.config).await;
        let ready = spawned.elapsed();
        let mut probes = 0;
        // First 202 over plain HTTP.
        let client = browser();
        let r = client
            .post(format!("http://{}/api/event", self.ports.http))
            .header("host", HOSTS[0])
            .body(r#"{"name":"pageview","url":"https://site1.example/probe"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{what}: {}", r.text().await.unwrap());
        probes += 1;
        let first_202 = spawned.elapsed();
        // Every stored certificate is served: TLS handshake and a 202 per host.
        let tls = self.ca.client(&HOSTS, self.ports.https);
        for host in HOSTS {
            let r = tls
                .post(format!("https://{host}/api/event"))
                .body(format!(
                    r#"{{"name":"pageview","url":"https://{host}/tls-probe"}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                202,
                "{what} over TLS: {}",
                r.text().await.unwrap()
            );
            probes += 1;
        }
        let tls_done = spawned.elapsed();
        eprintln!(
            "{what}: ready {ready:?}, first 202 {first_202:?}, TLS 202 {tls_done:?} after spawn"
        );
        assert!(
            tls_done < Duration::from_secs(5),
            "{what}: edge not accepting (HTTP and TLS) within 5 s of its start: {tls_done:?}"
        );
        (edge, probes)
    }
}

/// Every record in the topic: one consumer reads each partition from the
/// start to its end (partition EOF). Returns (records, distinct event ids,
/// records per partition).
async fn kafka_contents(
    broker: &Broker,
    key: &BackendKey,
) -> (usize, BTreeSet<[u8; 16]>, Vec<usize>) {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("faults-read-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let opener = key.opener();
    let mut ids = BTreeSet::new();
    let mut per_partition = vec![0usize; 3];
    let mut at_end = BTreeSet::new();
    while at_end.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .expect("no record nor end of partition within 60 s");
        match m {
            Ok(m) => {
                let site = std::str::from_utf8(m.key().unwrap()).unwrap();
                ids.insert(opener.open(site, m.payload().unwrap()).unwrap().event_id);
                per_partition[m.partition() as usize] += 1;
                at_end.remove(&m.partition());
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
            }
            Err(e) => panic!("consume failed: {e}"),
        }
    }
    (per_partition.iter().sum(), ids, per_partition)
}

fn audit(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("edge-backend"))
        .arg("audit")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "audit failed to run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

fn aggregated(db_url: &str, from_ms: i64) -> i64 {
    SITES_N
        .iter()
        .map(|site| events_in(&stats_cli(db_url, site, from_ms, "hour")))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_event_is_accounted_for_through_broker_edge_and_aggregator_faults() {
    init_crypto();
    let started = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    broker.create_topic(DLQ, 1).await;
    let keys = dir.path().join("keys");
    let key = BackendKey::generate(&keys);
    let ports = EdgePorts::pick();
    let ca = TestCa::new();
    let certs = vec![ca.issue(dir.path(), "sites", &HOSTS)];
    let mut builder = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key).ports(ports);
    for cert in certs {
        builder = builder.cert(cert);
    }
    let config = builder
        .site(SITES_N[0], &[HOSTS[0]])
        .site(SITES_N[1], &[HOSTS[1]])
        .render();
    let w = World {
        dir,
        ports,
        config,
        ca,
    };
    let db = PgDb::create("faults").await;
    let backup_dir = w.dir.path().join("backup-data");
    let backup_log = std::fs::File::create(w.dir.path().join("backup.log")).unwrap();
    let _backup = ChildGuard(
        Command::new(bin("edge-backend"))
            .args(["backup", "--brokers", &broker.addr, "--topic", TOPIC])
            .args(["--window-seconds", "1", "--grace-seconds", "0"])
            .args(["--property", &format!("session.timeout.ms={SESSION_MS}")])
            .arg("--data-dir")
            .arg(&backup_dir)
            .env("RUST_LOG", "info,edge_backend=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(backup_log)
            .spawn()
            .unwrap(),
    );
    let mut agg = Aggregator::start(w.dir.path(), &broker.addr, TOPIC, &keys, &db.url, 200);
    let (mut edge, mut accepted) = w.start_edge("first start").await;
    let target = format!("http://{}", ports.http);

    // Phase 1 (35 s): the aggregator is killed and restarted, then the
    // broker is frozen for 30 s, all under load.
    let load = tokio::spawn(synth(target.clone(), 35, 1));
    assert_eventually!(
        aggregated(&db.url, started) >= 500,
        Duration::from_secs(30),
        "aggregator counted nothing:\n{}",
        agg.log()
    );
    agg.kill9();
    let before_pause = accepted_metric(&edge).await;
    broker.pause();
    let paused = Instant::now();
    // Restarted during the freeze: it joins its group (6 s session) only once
    // the broker answers, so no live member's session expires in the freeze
    // (Tansu 0.6 would then never form the group again: docs/backup.md
    // "Broker stalls"), however fast this machine starts it.
    agg = Aggregator::start(w.dir.path(), &broker.addr, TOPIC, &keys, &db.url, 200);
    eprintln!("aggregator killed (-9), broker paused, aggregator restarted");
    // The fault lasts 30 s; meanwhile the edge keeps accepting into its spool.
    assert_eventually!(
        paused.elapsed() >= Duration::from_secs(30),
        Duration::from_secs(31),
        "pause"
    );
    let during_pause = accepted_metric(&edge).await - before_pause;
    let spooled = edge.metric("edge_spool_records", &[]).await;
    broker.resume();
    eprintln!("broker paused 30 s: {during_pause} events accepted meanwhile, {spooled} spooled");
    assert!(
        during_pause > 0.0,
        "the edge accepted nothing while the broker was frozen"
    );
    assert!(
        spooled > 0.0,
        "nothing waited in the spool during the pause"
    );
    accepted += accepted_in(
        &load.await.unwrap(),
        "phase 1 (aggregator kill, broker pause)",
    );

    // SIGTERM, restart.
    assert!(
        edge.terminate(Duration::from_secs(30)),
        "edge did not exit cleanly on SIGTERM:\n{}",
        edge.log()
    );
    drop(edge);
    let (e, probes) = w.start_edge("restart after SIGTERM").await;
    edge = e;
    accepted += probes;

    // Phase 2 (8 s), then kill -9 right after, with whatever is still spooled.
    accepted += accepted_in(&synth(target.clone(), 8, 2).await, "phase 2");
    eprintln!(
        "kill -9 edge with {} records spooled",
        edge.metric("edge_spool_records", &[]).await
    );
    kill("-KILL", edge.pid());
    drop(edge);
    let (e, probes) = w.start_edge("restart after kill -9").await;
    edge = e;
    accepted += probes;

    // Phase 3 (4 s).
    accepted += accepted_in(&synth(target.clone(), 4, 3).await, "phase 3");
    assert!(accepted >= 20_000, "only {accepted} events driven");

    // Everything shipped, counted and backed up.
    wait_drained(&edge).await;
    wait_for_site_events(
        &mut agg,
        &db.url,
        &SITES_N,
        started,
        accepted as i64,
        Duration::from_secs(180),
    )
    .await;

    let (kafka_records, kafka_ids, per_partition) = kafka_contents(&broker, &key).await;
    eprintln!("Kafka: {per_partition:?} records per partition");
    assert!(!kafka_ids.contains(&[0; 16]), "a record without event id");
    assert_eq!(
        kafka_ids.len() as u64,
        accepted,
        "distinct event ids in Kafka != 2xx answers ({kafka_records} records)"
    );
    let store = BackupStore::open(&StoreConfig::Local {
        data_dir: backup_dir.clone(),
    })
    .unwrap();
    assert_eventually!(
        stored_count(&store, TOPIC).await >= kafka_records as u64,
        Duration::from_secs(120),
        "backup incomplete: {} of {kafka_records}; backup log:\n{}",
        stored_count(&store, TOPIC).await,
        std::fs::read_to_string(w.dir.path().join("backup.log")).unwrap_or_default()
    );

    let from = (started - started.rem_euclid(3_600_000)).to_string();
    let to = (now_ms() + 3_600_000).to_string();
    let keys_s = keys.display().to_string();
    let backup_s = backup_dir.display().to_string();
    let (mut offsets, mut backup_ids, mut counted, mut dups) = (0u64, 0u64, 0u64, 0u64);
    for site in SITES_N {
        let r = audit(&[
            "--site",
            site,
            "--from",
            &from,
            "--to",
            &to,
            "--db",
            &db.url,
            "--backup-dir",
            &backup_s,
            "--topic",
            TOPIC,
            "--keys",
            &keys_s,
        ]);
        eprintln!("audit {site}: {r}");
        assert_eq!(r["unaccounted"], 0, "{r:#}");
        assert_eq!(r["backup"]["without_event_id"], 0, "{r:#}");
        assert_eq!(r["backup"]["unopenable"], 0, "{r:#}");
        assert_eq!(r["aggregator"]["custom_events"], 0, "{r:#}");
        offsets += r["backup"]["distinct_offsets"].as_u64().unwrap();
        backup_ids += r["backup"]["distinct_event_ids"].as_u64().unwrap();
        counted += r["aggregator"]["pageviews"].as_u64().unwrap();
        dups += r["aggregator"]["duplicates"].as_u64().unwrap();
    }
    eprintln!(
        "2xx {accepted}; Kafka {kafka_records} records, {} distinct ids; backup {offsets} offsets, \
         {backup_ids} distinct ids; aggregate {counted} counted, {dups} duplicates",
        kafka_ids.len()
    );
    assert_eq!(
        counted, accepted,
        "pageviews in the aggregate != 2xx answers"
    );
    assert_eq!(
        backup_ids, accepted,
        "distinct event ids in the backup != 2xx answers"
    );
    assert_eq!(
        offsets, kafka_records as u64,
        "backup offsets != Kafka records"
    );
    assert_eq!(
        dups,
        kafka_records as u64 - accepted,
        "duplicates counted != Kafka records - distinct ids"
    );
    drop(agg);
    db.drop_db().await;
}

/// Waits until the edge's spool is empty, printing the shipper's progress.
async fn wait_drained(edge: &Edge) {
    let deadline = Instant::now() + Duration::from_secs(480);
    let mut last_print = Instant::now();
    loop {
        let left = edge.metric("edge_spool_records", &[]).await;
        if left == 0.0 {
            return;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "draining: {left} spooled, {} acked, {} failed",
                edge.metric("edge_shipper_deliveries_total", &[("outcome", "acked")])
                    .await,
                edge.metric("edge_shipper_deliveries_total", &[("outcome", "failed")])
                    .await
            );
        }
        assert!(
            Instant::now() < deadline,
            "spool not drained ({left} left): {}\n{}",
            reqwest::get(format!("http://{}/admin/spool", edge.ports.admin))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
