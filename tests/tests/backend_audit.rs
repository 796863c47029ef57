//! `edge-backend audit` after an "incident": events through the real edge
//! (which gives each one an event id), the real backup and aggregator, then
//! a window of backed-up records produced to the topic again (as a replay
//! would). The aggregator counts each event once, and `audit` reconciles
//! the backup with the counts: every backed-up record is counted, a
//! duplicate, or a dead letter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use support::aggregate::*;
use support::backup::{BackupStore, StoreConfig, stored_count, stored_records};

fn audit(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("edge-backend"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "audit failed to run: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_reconciles_backup_and_counts_after_a_replayed_window() {
    let s = setup("audit").await;
    let started = now_ms();
    let from = started - started.rem_euclid(3_600_000);
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        s.dir.path().join("agg.db").display()
    );
    let backup_dir = s.dir.path().join("backup-data");
    let backup_log = std::fs::File::create(s.dir.path().join("backup.log")).unwrap();
    let _backup = ChildGuard(
        Command::new(bin("edge-backend"))
            .args(["backup", "--brokers", &s.broker.addr, "--topic", s.topic])
            .args(["--window-seconds", "1", "--grace-seconds", "0"])
            .args(["--property", "session.timeout.ms=6000"])
            .arg("--data-dir")
            .arg(&backup_dir)
            .stdout(Stdio::null())
            .stderr(backup_log)
            .spawn()
            .unwrap(),
    );
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, &db_url, 10);
    let requests = plan(40, 0);
    send(&s.edge, &requests).await;
    let n = total_events(&requests);
    wait_for_events(&mut agg, &db_url, started, n as i64).await;
    let store = BackupStore::open(&StoreConfig::Local {
        data_dir: backup_dir.clone(),
    })
    .unwrap();
    assert_eventually!(
        stored_count(&store, s.topic).await >= n as u64,
        Duration::from_secs(60),
        "backup incomplete"
    );

    // Every record the edge sent carries its own event id.
    let opener = s.key.opener();
    let backed_up = stored_records(&store, s.topic).await;
    let ids: BTreeSet<[u8; 16]> = backed_up
        .iter()
        .map(|r| {
            let site = std::str::from_utf8(r.key.as_deref().unwrap()).unwrap();
            opener
                .open(site, r.value.as_deref().unwrap())
                .unwrap()
                .event_id
        })
        .collect();
    assert_eq!(ids.len(), n);
    assert!(!ids.contains(&[0; 16]));

    // The incident: site-a's records produced again, unchanged.
    let p = producer(&s.broker);
    let again: Vec<_> = backed_up
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"site-a"[..]))
        .collect();
    for r in &again {
        produce(&p, s.topic, "site-a", r.value.as_deref().unwrap()).await;
    }
    assert_eventually!(
        {
            agg.assert_running();
            agg_metric(&agg, "edge_backend_duplicate_events_total", &[]).await >= again.len() as f64
        },
        Duration::from_secs(60),
        "the replayed records were not seen:\n{}",
        agg.log()
    );
    wait_for_events(&mut agg, &db_url, started, n as i64).await;
    assert_eventually!(
        stored_count(&store, s.topic).await >= (n + again.len()) as u64,
        Duration::from_secs(60),
        "backup of the replayed records incomplete"
    );

    let x = expected(&requests, "site-a");
    let site_a_events = (x.pageviews + x.custom_events) as u64;
    assert_eq!(again.len() as u64, site_a_events);
    let to = (now_ms() + 3_600_000).to_string();
    let from = from.to_string();
    let keys = s.keys.display().to_string();
    let backup_dir = backup_dir.display().to_string();
    let (ok, out) = audit(&[
        "--site",
        "site-a",
        "--from",
        &from,
        "--to",
        &to,
        "--db",
        &db_url,
        "--backup-dir",
        &backup_dir,
        "--topic",
        s.topic,
        "--keys",
        &keys,
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok, "{r:#}");
    assert_eq!(r["backup"]["records"], 2 * site_a_events, "{r:#}");
    assert_eq!(r["backup"]["distinct_offsets"], 2 * site_a_events, "{r:#}");
    assert_eq!(r["backup"]["distinct_event_ids"], site_a_events, "{r:#}");
    assert_eq!(r["backup"]["without_event_id"], 0, "{r:#}");
    assert_eq!(r["aggregator"]["pageviews"], x.pageviews, "{r:#}");
    assert_eq!(r["aggregator"]["custom_events"], x.custom_events, "{r:#}");
    assert_eq!(
        r["aggregator"]["distinct_event_ids"], site_a_events,
        "{r:#}"
    );
    assert_eq!(r["aggregator"]["duplicates"], site_a_events, "{r:#}");
    assert_eq!(r["unaccounted"], 0, "{r:#}");

    // Text form, without keys; and a range with nothing backed up balances at 0.
    let (ok, text) = audit(&[
        "--site",
        "site-b",
        "--from",
        &from,
        "--to",
        &to,
        "--db",
        &db_url,
        "--backup-dir",
        &backup_dir,
        "--topic",
        s.topic,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("distinct event ids - (give --keys)"),
        "{text}"
    );
    assert!(
        text.contains("unaccounted (backup offsets - counted - duplicates - dead letters): 0"),
        "{text}"
    );

    // A record missing from the counts shows up: the backup of site-b
    // against an empty database.
    let empty = format!(
        "sqlite://{}?mode=rwc",
        s.dir.path().join("empty.db").display()
    );
    let (ok, text) = audit(&[
        "--site",
        "site-b",
        "--from",
        &from,
        "--to",
        &to,
        "--db",
        &empty,
        "--backup-dir",
        &backup_dir,
        "--topic",
        s.topic,
    ]);
    assert!(!ok, "{text}");
    let xb = expected(&requests, "site-b");
    assert!(
        text.contains(&format!(
            "unaccounted (backup offsets - counted - duplicates - dead letters): {}",
            xb.pageviews + xb.custom_events
        )),
        "{text}"
    );
}
