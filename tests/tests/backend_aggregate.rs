//! `edge-backend aggregate` end to end: browser events through the real edge
//! binary into a real Kafka-protocol broker (Tansu), aggregated by the real
//! `edge-backend` binary into SQLite or PostgreSQL, read back with
//! `edge-backend stats` and the HTTP endpoint. Expected numbers are computed
//! here from what was sent, independently of the aggregator's code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::aggregate::*;

#[tokio::test(flavor = "multi_thread")]
async fn rollups_match_what_was_sent_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display());
    rollups_match_what_was_sent(&url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_match_what_was_sent_postgres() {
    let db = PgDb::create("e2e").await;
    rollups_match_what_was_sent(&db.url).await;
    db.drop_db().await;
}

async fn kill9_mid_stream_and_restart(db_url: &str) {
    let s = setup("agg-kill").await;
    let started = now_ms();
    // Small batches: many transactions, so the kills land between and inside them.
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, db_url, 7);
    let requests = plan(300, 3);
    let n = total_events(&requests) as i64;
    let sender = {
        let edge_http = s.edge.ports.http;
        let requests = requests.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for r in &requests {
                let resp = client
                    .post(format!("http://{edge_http}/api/event"))
                    .header("host", r.host)
                    .header("user-agent", r.user_agent())
                    .body(r.body())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    for round in 0..3 {
        // Wait until this run has made progress, then kill it mid-stream.
        let before: i64 = SITES
            .iter()
            .map(|(site, _)| events_in(&stats_cli(db_url, site, started, "hour")))
            .sum();
        assert_eventually!(
            {
                agg.assert_running();
                let now: i64 = SITES
                    .iter()
                    .map(|(site, _)| events_in(&stats_cli(db_url, site, started, "hour")))
                    .sum();
                now > before || now == n
            },
            Duration::from_secs(60),
            "round {round}: no progress:\n{}",
            agg.log()
        );
        agg.kill9();
        agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, db_url, 7);
    }
    sender.await.unwrap();
    // The premise: exactly n records are in the topic.
    let in_topic = s
        .broker
        .consume(s.topic, n as usize + 1, Duration::from_secs(8))
        .await;
    assert_eq!(in_topic.len() as i64, n);
    wait_for_events(&mut agg, db_url, started, n).await;
    for (site, _) in SITES {
        assert_report(
            &stats_cli(db_url, site, started, "hour"),
            &expected(&requests, site),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_stream_and_restart_keeps_totals_exact_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display());
    kill9_mid_stream_and_restart(&url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_stream_and_restart_keeps_totals_exact_postgres() {
    let db = PgDb::create("kill").await;
    kill9_mid_stream_and_restart(&db.url).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_records_go_to_the_dead_letter_topic_and_processing_continues() {
    let s = setup("agg-dlq").await;
    let started = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display());
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, &db_url, 20);
    let first = plan(20, 0);
    send(&s.edge, &first).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.broker.addr)
        .create()
        .unwrap();
    let garbage = producer
        .send(
            FutureRecord::to(s.topic)
                .key("site-a")
                .payload("garbage, not an envelope"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let keyless = producer
        .send(
            FutureRecord::<(), _>::to(s.topic).payload("no key at all"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let second = plan(20, 50);
    send(&s.edge, &second).await;
    let n = (total_events(&first) + total_events(&second)) as i64;
    wait_for_events(&mut agg, &db_url, started, n).await;

    let letters = dead_letters(&s.broker, 3).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let by_reason: BTreeMap<String, _> = letters
        .iter()
        .map(|l| (l.2["edge-dlq-reason"].clone(), l.clone()))
        .collect();
    let bad = &by_reason["bad_magic"];
    assert_eq!(bad.0.as_deref(), Some(&b"site-a"[..]));
    assert_eq!(bad.1, b"garbage, not an envelope");
    assert_eq!(bad.2["edge-dlq-topic"], s.topic);
    assert_eq!(bad.2["edge-dlq-partition"], garbage.partition.to_string());
    assert_eq!(bad.2["edge-dlq-offset"], garbage.offset.to_string());
    let missing = &by_reason["missing_key"];
    assert_eq!(missing.0, None);
    assert_eq!(missing.1, b"no key at all");
    assert_eq!(missing.2["edge-dlq-offset"], keyless.offset.to_string());

    let metrics = agg.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        parse_metric(
            &metrics,
            "edge_backend_dead_letters_total",
            &[("reason", "bad_magic")]
        ),
        1.0
    );
    assert_eq!(
        parse_metric(
            &metrics,
            "edge_backend_dead_letters_total",
            &[("reason", "missing_key")]
        ),
        1.0
    );
    let all: Vec<Request> = first.iter().chain(&second).cloned().collect();
    for (site, _) in SITES {
        assert_report(
            &stats_cli(&db_url, site, started, "hour"),
            &expected(&all, site),
        );
    }
    // A restart does not send them again (their offsets are stored).
    agg.kill9();
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, &db_url, 20);
    let third = plan(5, 90);
    send(&s.edge, &third).await;
    wait_for_events(&mut agg, &db_url, started, n + total_events(&third) as i64).await;
    assert_eq!(dead_letters(&s.broker, 3).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_mid_stream_loses_nothing() {
    let mut s = setup("agg-rotate").await;
    let started = now_ms();
    // Rotation step 2: the new private key is installed on the backend first.
    let new_key = BackendKey::generate(&s.keys);
    assert_ne!(new_key.key_id, s.key.key_id);
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display());
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, &db_url, 25);

    let before = plan(40, 0);
    send(&s.edge, &before).await;
    // Step 3: the edge switches to the new public key, live.
    s.config.clone().backend_key(&new_key).write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 200, "{body}");
    let after = plan(40, 7);
    send(&s.edge, &after).await;

    let n = (total_events(&before) + total_events(&after)) as i64;
    wait_for_events(&mut agg, &db_url, started, n).await;
    let all: Vec<Request> = before.iter().chain(&after).cloned().collect();
    for (site, _) in SITES {
        assert_report(
            &stats_cli(&db_url, site, started, "hour"),
            &expected(&all, site),
        );
    }
    let metrics = agg.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        parse_metric(&metrics, "edge_backend_dead_letters_total", &[]),
        0.0
    );

    // Both key ids really arrived: exactly the events before the reload under the old one.
    let records = s
        .broker
        .consume(s.topic, n as usize + 1, Duration::from_secs(8))
        .await;
    assert_eq!(records.len() as i64, n);
    let mut per_key: BTreeMap<String, i64> = BTreeMap::new();
    for r in &records {
        let h = edge_envelope::peek_header(&r.payload).unwrap();
        *per_key.entry(h.recipient_key_id.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_key.get(&s.key.key_id),
        Some(&(total_events(&before) as i64))
    );
    assert_eq!(
        per_key.get(&new_key.key_id),
        Some(&(total_events(&after) as i64))
    );
    s.key = new_key;
}

/// Consumer throughput: N sealed events produced straight to the topic
/// (3 partitions, 20 sites, 5,000 visitors, 60 minutes), then timed from
/// the aggregator's start until `stats` shows all of them.
/// `cargo test -p edge-tests --test backend_aggregate -- --ignored --nocapture throughput`
/// (set `EDGE_AGG_BENCH_DB` to a postgres:// URL to measure PostgreSQL).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn throughput() {
    use edge_envelope::{BrowserFamily, DeviceClass, EventRecord, OsFamily, Utm};
    init_crypto();
    let n: usize = std::env::var("EDGE_AGG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("agg-bench", 3).await;
    broker.create_topic(DLQ, 1).await;
    let keys = dir.path().join("keys");
    let key = BackendKey::generate(&keys);
    let sealer = edge_envelope::Sealer::new(
        edge_envelope::PublicKey::from_base64(&key.public_key).unwrap(),
        edge_envelope::RotationPolicy::default(),
    )
    .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let base = now_ms() - now_ms().rem_euclid(3_600_000) - 3_600_000;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let site = format!("site-{}", i % 20);
        let mut visitor = [0u8; 16];
        visitor[..4].copy_from_slice(&((i * 7919) % 5000).to_be_bytes()[4..]);
        let rec = EventRecord {
            site_id: site.clone(),
            received_at_ms: base + (i as i64 * 3_600_000 / n as i64),
            name: if i.is_multiple_of(10) {
                "signup".into()
            } else {
                "pageview".into()
            },
            url: format!("https://{site}.test/page/{}", i % 50),
            referrer: i
                .is_multiple_of(3)
                .then(|| format!("https://ref{}.example/", i % 10)),
            utm: Utm::default(),
            props: vec![],
            visitor_id: visitor,
            device: if i.is_multiple_of(2) {
                DeviceClass::Desktop
            } else {
                DeviceClass::Mobile
            },
            browser: BrowserFamily::Firefox,
            os: OsFamily::Linux,
            event_id: {
                let mut id = [0xEEu8; 16];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                id
            },
        };
        let payload = sealer.seal(&site, &rec).unwrap();
        let f = producer
            .send_result(FutureRecord::to("agg-bench").key(&site).payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
        pending.push(f);
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    let db_url = std::env::var("EDGE_AGG_BENCH_DB")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.path().join("agg.db").display()));
    let started = Instant::now();
    let mut agg = Aggregator::start(dir.path(), &broker.addr, "agg-bench", &keys, &db_url, 5000);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        agg.assert_running();
        let metrics = agg.try_metrics().await.unwrap_or_default();
        let done = parse_metric(&metrics, "edge_backend_events_aggregated_total", &[]);
        if done as usize >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n}:\n{}",
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let total: i64 = (0..20)
        .map(|i| {
            let r = stats_cli(&db_url, &format!("site-{i}"), base, "hour");
            events_in(&r)
        })
        .sum();
    assert_eq!(total, n as i64);
    println!(
        "aggregation throughput: {n} events in {secs:.2} s = {:.0} events/s ({})",
        n as f64 / secs,
        if db_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
}
