//! The aggregator never stalls on a record's content, survives a lost
//! database with backoff, and counts a record delivered twice once: real
//! Tansu, real PostgreSQL (a fresh database per test), the real
//! `edge-backend aggregate`, and records sealed here with the backend's
//! public key and produced straight to Kafka (as a tampering edge, or a
//! replay, would).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::aggregate::*;

async fn admin_sql(sql: String) {
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

async fn counted(agg: &Aggregator) -> f64 {
    agg_metric(agg, "edge_backend_events_aggregated_total", &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_record_is_dead_lettered_outage_is_retried_and_duplicates_count_once_postgres() {
    let t = RawTopic::new("poison", 1).await;
    let (broker, topic, sealer, p) = (&t.broker, t.topic, &t.sealer, &t.producer);
    let db = PgDb::create("poison").await;
    let base = now_ms() - 60_000;

    // 10 good events, the poison, 10 more good ones (one partition: in order).
    let mut sealed = Vec::new();
    for i in 0..10u32 {
        let r = record(
            "site-a",
            base + i64::from(i),
            "pageview",
            "/",
            i as u8,
            1 + i,
        );
        sealed.push(sealer.seal("site-a", &r).unwrap());
    }
    let poison = record("site-a", base, "evt\u{0}x", "/", 99, 1000);
    let poison_bytes = sealer.seal("site-a", &poison).unwrap();
    for i in 10..20u32 {
        let r = record("site-a", base + i64::from(i), "signup", "/", i as u8, 1 + i);
        sealed.push(sealer.seal("site-a", &r).unwrap());
    }
    for s in &sealed[..10] {
        produce(p, topic, "site-a", s).await;
    }
    let (_, poison_offset) = produce(p, topic, "site-a", &poison_bytes).await;
    for s in &sealed[10..] {
        produce(p, topic, "site-a", s).await;
    }

    let mut agg = t.aggregator(&db.url, 5, &[]);
    assert_eventually!(
        {
            agg.assert_running();
            counted(&agg).await >= 20.0
        },
        Duration::from_secs(60),
        "the good events around the poison were not counted:\n{}",
        agg.log()
    );

    // The database goes away: connections killed, new ones refused.
    admin_sql(format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        db.name
    ))
    .await;
    admin_sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ))
    .await;
    // Meanwhile: 5 new events, and 4 of the first ones delivered again.
    let mut more = Vec::new();
    for i in 20..25u32 {
        let r = record(
            "site-a",
            base + i64::from(i),
            "pageview",
            "/",
            i as u8,
            1 + i,
        );
        more.push(sealer.seal("site-a", &r).unwrap());
    }
    for s in more.iter().chain(&sealed[..4]) {
        produce(p, topic, "site-a", s).await;
    }
    assert_eventually!(
        {
            agg.assert_running();
            agg_metric(
                &agg,
                "edge_backend_store_errors_total",
                &[("class", "infrastructure")],
            )
            .await
                >= 2.0
        },
        Duration::from_secs(90),
        "no retried infrastructure error while the database was away:\n{}",
        agg.log()
    );
    assert!(agg_metric(&agg, "edge_backend_retry_delay_seconds", &[]).await > 0.0);
    assert_eq!(counted(&agg).await, 20.0);
    admin_sql(format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name)).await;

    assert_eventually!(
        {
            agg.assert_running();
            counted(&agg).await >= 25.0
                && agg_metric(&agg, "edge_backend_duplicate_events_total", &[]).await >= 4.0
        },
        Duration::from_secs(90),
        "not everything counted after the database came back:\n{}",
        agg.log()
    );
    let log = agg.log();
    assert!(
        log.contains("batch failed; reading it again after a delay")
            && log.contains("infrastructure"),
        "{log}"
    );
    // Exactly: 25 distinct events, the 4 repeats dropped, nothing else dead-lettered.
    let report = stats_cli(&db.url, "site-a", base, "hour");
    assert_eq!(report["totals"]["pageviews"], 15, "{report:#}");
    assert_eq!(report["totals"]["custom_events"], 10, "{report:#}");
    assert_eq!(counted(&agg).await, 25.0);
    assert_eq!(
        agg_metric(&agg, "edge_backend_duplicate_events_total", &[]).await,
        4.0
    );
    assert_eq!(
        agg_metric(
            &agg,
            "edge_backend_store_errors_total",
            &[("class", "content")]
        )
        .await,
        0.0
    );
    let letters = dead_letters(broker, 2).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (k, v, h) = &letters[0];
    assert_eq!(k.as_deref(), Some(&b"site-a"[..]));
    assert_eq!(v, &poison_bytes, "the dead letter is the record, unchanged");
    assert_eq!(h["edge-dlq-reason"], "control_character");
    assert_eq!(h["edge-dlq-error"], "control character in name");
    assert_eq!(h["edge-dlq-offset"], poison_offset.to_string());
    assert_eq!(
        agg_metric(
            &agg,
            "edge_backend_dead_letters_total",
            &[("reason", "control_character")]
        )
        .await,
        1.0
    );
    agg.kill9();
    db.drop_db().await;
}

/// The same sealed record produced twice, and a whole window produced
/// again, count once on SQLite too.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_sealed_record_twice_and_a_replayed_window_count_once_sqlite() {
    let t = RawTopic::new("dedupe", 2).await;
    let (topic, sealer, p) = (t.topic, &t.sealer, &t.producer);
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        t.dir.path().join("agg.db").display()
    );
    let base = now_ms() - 60_000;
    let window: Vec<Vec<u8>> = (0..30u32)
        .map(|i| {
            let site = if i.is_multiple_of(2) {
                "site-a"
            } else {
                "site-b"
            };
            let r = record(site, base + i64::from(i), "pageview", "/", i as u8, 500 + i);
            sealer.seal(site, &r).unwrap()
        })
        .collect();
    let site_of = |i: usize| {
        if i.is_multiple_of(2) {
            "site-a"
        } else {
            "site-b"
        }
    };
    for (i, s) in window.iter().enumerate() {
        produce(p, topic, site_of(i), s).await;
        if i == 7 {
            produce(p, topic, site_of(i), s).await; // delivered twice in a row
        }
    }
    let mut agg = t.aggregator(&db_url, 8, &[]);
    wait_for_events(&mut agg, &db_url, base, 30).await;
    // The whole window again (as `replay` would send it).
    for (i, s) in window.iter().enumerate() {
        produce(p, topic, site_of(i), s).await;
    }
    assert_eventually!(
        {
            agg.assert_running();
            agg_metric(&agg, "edge_backend_duplicate_events_total", &[]).await >= 31.0
        },
        Duration::from_secs(60),
        "the replayed window was not seen:\n{}",
        agg.log()
    );
    wait_for_events(&mut agg, &db_url, base, 30).await;
    assert_eq!(
        agg_metric(&agg, "edge_backend_duplicate_events_total", &[]).await,
        31.0
    );
    assert_eq!(
        agg_metric(&agg, "edge_backend_dead_letters_total", &[]).await,
        0.0
    );
}

/// "A crash between dead-letter produce and offset commit can repeat a
/// dead letter, never lose one": the aggregator is killed (-9) after the
/// broker acknowledged a batch's dead letter and before the batch's offsets
/// were committed (a test failpoint holds it there), then restarted.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_between_dead_letter_and_offset_commit_repeats_the_letter_never_loses_it() {
    let t = RawTopic::new("dlq-crash", 1).await;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        t.dir.path().join("agg.db").display()
    );
    let base = now_ms() - 60_000;
    for i in 0..6u32 {
        t.produce_record(&record(
            "site-a",
            base + i64::from(i),
            "pageview",
            "/",
            i as u8,
            1 + i,
        ))
        .await;
    }
    let (_, poison_offset) = t
        .produce_record(&record("site-a", base, "evt\u{0}x", "/", 99, 1000))
        .await;
    for i in 6..12u32 {
        t.produce_record(&record(
            "site-a",
            base + i64::from(i),
            "signup",
            "/",
            i as u8,
            1 + i,
        ))
        .await;
    }

    let mut agg = t.aggregator(
        &db_url,
        4,
        &[("EDGE_BACKEND_FAILPOINT", "hold_after_dead_letters")],
    );
    assert_eventually!(
        {
            agg.assert_running();
            agg.log().contains("failpoint hold_after_dead_letters")
        },
        Duration::from_secs(60),
        "the aggregator never reached the failpoint:\n{}",
        agg.log()
    );
    // In the window: the letter is in the dead-letter topic, its batch's
    // offsets are not committed.
    let letters = dead_letters(&t.broker, 1).await;
    assert_eq!(
        letters.len(),
        1,
        "the letter was not acknowledged before the hold"
    );
    assert_eq!(letters[0].2["edge-dlq-offset"], poison_offset.to_string());
    assert!(
        !consumed_to_end(&agg, &db_url).await,
        "the held batch's offsets were committed"
    );
    agg.kill9();

    let mut agg = t.aggregator(&db_url, 4, &[]);
    // wait_for_events waits until the stored offsets reach the end of the
    // topic: the poison's batch was read again and committed.
    wait_for_events(&mut agg, &db_url, base, 12).await;
    let letters = dead_letters(&t.broker, 3).await;
    assert_eq!(
        letters.len(),
        2,
        "the letter is repeated once (sent again with its re-read batch): {letters:?}"
    );
    for (k, _, h) in &letters {
        assert_eq!(k.as_deref(), Some(&b"site-a"[..]));
        assert_eq!(h["edge-dlq-reason"], "control_character");
        assert_eq!(h["edge-dlq-offset"], poison_offset.to_string());
    }
    let report = stats_cli(&db_url, "site-a", base, "hour");
    assert_eq!(report["totals"]["pageviews"], 6, "{report:#}");
    assert_eq!(report["totals"]["custom_events"], 6, "{report:#}");
    agg.kill9();
}
