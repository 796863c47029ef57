//! What must never cause an order, or must cause few: random names in a
//! burst, a name whose validation keeps failing, a name whose DNS points
//! elsewhere, names over the issuance limit.

use std::time::{Duration, Instant};

use edge_tests::pebble::assert_no_certificate;
use edge_tests::*;

use crate::setup::{Setup, unix_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_names_never_cause_an_order_even_in_a_burst() {
    // The burst comes from one address: lift the per-client connection cap
    // (256 by default) so every handshake reaches the resolver.
    let limits = "\n[connections]\nmax_per_client = 1024";
    let s = Setup::start(3600, &["known.example.com"], limits).await;
    let root = s.pebble.root().await;
    s.wait_for_cert("known.example.com", Duration::from_secs(30))
        .await;
    let orders_before = s.pebble.orders();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let addr = s.ports.https;
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            assert_no_certificate(addr, &format!("r{i}-{}.example.net", i * 7919), &root).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eventually!(
        s.handshakes("unknown_sni").await == 300.0,
        Duration::from_secs(10),
        "not every random name was counted as unknown_sni: {}",
        s.handshakes("unknown_sni").await
    );
    // Positive control: a name added after the burst is ordered and served.
    // Orders caused by the burst would have been placed before it.
    s.reload(&["known.example.com", "later.example.com"], limits)
        .await;
    s.wait_for_cert("later.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(
        s.pebble.orders(),
        orders_before + 1,
        "a random SNI caused an order"
    );
    assert_eq!(s.handshakes("unknown_sni").await, 300.0);
    assert_eq!(
        s.cert_names().await,
        ["known.example.com", "later.example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_validation_backs_off_instead_of_hammering_the_ca() {
    // Validation connects to 127.0.0.2, where nothing listens. Backoff after
    // failure n: 1, 2, 4, 4 … s.
    let backoff = "backoff_initial_seconds = 1\nbackoff_max_seconds = 4";
    let s = Setup::start(3600, &[], backoff).await;
    s.pebble.point("broken.example.com", "127.0.0.2").await;
    let mut before_first = Instant::now();
    s.reload(&["broken.example.com"], backoff).await;

    // Poll the failure counter. `before_first` is the start of the last
    // poll that saw no failure, `at_fourth` the end of the first poll that
    // saw four: (at_fourth - before_first) bounds the time between the first
    // and fourth failure from above, so a slow machine cannot make the
    // check below fail; a client without backoff fails four times in well
    // under a second.
    let backoffs = || s.edge.metric("edge_acme_backoffs_total", &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let at_fourth = loop {
        let started = Instant::now();
        let n = backoffs().await;
        if n == 0.0 {
            before_first = started;
        }
        if n >= 4.0 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{n} failures so far:\n{}",
            s.edge.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let spread = at_fourth - before_first;
    assert!(
        spread >= Duration::from_secs(1 + 2 + 4),
        "four failed attempts within {spread:?}: no backoff between them"
    );
    // Each attempt places at most one order per challenge type (two); read
    // orders first, then failures, so the bound holds with an attempt in flight.
    let orders = s.pebble.orders();
    let failures = backoffs().await;
    assert!(
        orders >= 4 && orders as f64 <= 2.0 * (failures + 1.0),
        "{orders} orders for {failures} failed attempts:\n{}",
        s.edge.log()
    );
    assert_eventually!(
        {
            let entry = s.cert_status("broken.example.com").await;
            entry["state"] == "backoff"
        },
        Duration::from_secs(30),
        "broken.example.com not shown in backoff: {}",
        s.certs().await
    );
    let certs = s.certs().await;
    let entry = &certs["names"][0];
    assert_eq!(entry["name"], "broken.example.com", "{certs}");
    assert!(entry["failures"].as_u64().unwrap() >= 2, "{certs}");
    assert!(entry["next_attempt_unix"].as_i64().is_some(), "{certs}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("validation failed"),
        "{certs}"
    );
    assert_eventually!(
        s.edge.metric("edge_acme_names_in_backoff", &[]).await == 1.0,
        Duration::from_secs(30),
        "edge_acme_names_in_backoff is not 1"
    );
    assert!(s.orders("http-01", "invalid").await + s.orders("tls-alpn-01", "invalid").await >= 4.0);
    // The name is refused quickly meanwhile, counted as waiting for its certificate.
    let root = s.pebble.root().await;
    s.assert_refused(&root, "broken.example.com", "no_cert_yet")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_holds_orders_until_the_name_points_here() {
    let s = Setup::start(3600, &[], "").await;
    s.pebble.point("moved.example.com", "192.0.2.10").await;
    let extra = format!(
        "backoff_initial_seconds = 60\n[acme.dns_check]\nresolver = \"{}\"\naddresses = [\"127.0.0.1\"]",
        s.pebble.dns
    );
    s.reload(&["moved.example.com", "here.example.com"], &extra)
        .await;
    s.wait_for_cert("here.example.com", Duration::from_secs(30))
        .await;
    assert_eventually!(
        s.cert_status("moved.example.com").await["state"] == "dns_mismatch",
        Duration::from_secs(10),
        "moved.example.com not reported as dns_mismatch"
    );
    // Only here.example.com was ordered (one order: http-01 succeeded first).
    assert_eq!(s.pebble.orders(), 1);
    assert!(
        s.edge
            .metric("edge_acme_dns_checks_total", &[("outcome", "mismatch")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_issuance_limit_holds_names_back_visibly() {
    let s = Setup::start(
        3600,
        &["first.example.com", "second.example.com"],
        "max_orders_per_hour = 1",
    )
    .await;
    // Names are handled in order; the first takes the hour's only attempt.
    s.wait_for_cert("first.example.com", Duration::from_secs(30))
        .await;
    assert_eventually!(
        {
            let n = s.cert_status("second.example.com").await;
            n["state"] == "rate_limited"
                && n["next_attempt_unix"].as_i64().unwrap_or(0) > unix_now() + 60
        },
        Duration::from_secs(10),
        "second.example.com not shown as rate limited: {}",
        s.certs().await
    );
    assert!(
        s.edge
            .metric("edge_acme_rate_limited_total", &[("scope", "global")])
            .await
            >= 1.0
    );
    assert_eq!(s.pebble.orders(), 1);
    let root = s.pebble.root().await;
    s.assert_refused(&root, "second.example.com", "no_cert_yet")
        .await;
}
