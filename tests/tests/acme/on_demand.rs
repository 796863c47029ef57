//! On-demand names under a wildcard: approved by the operator's `ask`
//! endpoint, answers cached, nothing ordered while the endpoint is down.

use std::time::Duration;

use edge_tests::pebble::tls_connect;
use edge_tests::*;

use crate::setup::{AskServer, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_names_are_asked_for_cached_and_survive_an_ask_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut ask = AskServer::start(dir.path());
    let on_demand = format!(
        "[acme.on_demand]\nask_url = \"http://127.0.0.1:{}/ask\"\nask_cache_seconds = 600",
        ask.port
    );
    let s = Setup::start(3600, &["*.customers.example.com"], &on_demand).await;
    let root = s.pebble.root().await;

    // An approved name: the first handshake fails fast (no_cert_yet), the
    // certificate follows in the background.
    s.assert_refused(&root, "ok1.customers.example.com", "no_cert_yet")
        .await;
    s.wait_for_cert("ok1.customers.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(ask.calls("ok1.customers.example.com"), 1);
    let orders_after_first = s.pebble.orders();

    // A burst of refused names under the wildcard: asked once each (answers
    // are cached: the repeats are refused as unknown at once), never
    // ordered. Names outside every wildcard are not even asked.
    let burst = |round: usize, outcome: &'static str| {
        let s = &s;
        let root = &root;
        async move {
            for i in 0..20 {
                let name = format!("bad{i}.customers.example.com");
                s.assert_refused(root, &name, outcome).await;
                s.assert_refused(
                    root,
                    &format!("x{round}-{i}.elsewhere.example"),
                    "unknown_sni",
                )
                .await;
            }
        }
    };
    burst(0, "no_cert_yet").await;
    assert_eventually!(
        asked(&s, "denied").await == 20.0,
        Duration::from_secs(30),
        "the 20 refused names were not all answered: {}",
        asked(&s, "denied").await
    );
    burst(1, "unknown_sni").await;
    burst(2, "unknown_sni").await;
    // Positive control: a new refused name asked after the repeats. Repeats
    // that went to the endpoint were queued before it.
    s.assert_refused(&root, "bad-marker.customers.example.com", "no_cert_yet")
        .await;
    assert_eventually!(
        ask.calls("bad-marker.customers.example.com") == 1,
        Duration::from_secs(30),
        "the marker name was not asked for"
    );
    assert_eventually!(
        asked(&s, "denied").await == 21.0,
        Duration::from_secs(30),
        "the marker's denial was not counted"
    );
    for i in 0..20 {
        assert_eq!(ask.calls(&format!("bad{i}.customers.example.com")), 1);
    }
    assert_eq!(
        ask.names().len(),
        22,
        "names outside the wildcard were asked: {:?}",
        ask.names()
    );
    assert_eq!(
        s.pebble.orders(),
        orders_after_first,
        "a refused name was ordered"
    );

    // The ask endpoint goes down: the certified name keeps working, and a
    // new name is neither approved nor ordered.
    ask.stop();
    for _ in 0..5 {
        tls_connect(s.ports.https, "ok1.customers.example.com", &root)
            .await
            .unwrap();
    }
    s.assert_refused(&root, "ok2.customers.example.com", "no_cert_yet")
        .await;
    assert_eventually!(
        asked(&s, "error").await >= 1.0,
        Duration::from_secs(10),
        "the failed ask call was not counted"
    );
    // Positive control: the endpoint returns and approves another name,
    // which is ordered and served. An order for ok2 would have come first.
    let ask = AskServer::start_on(dir.path(), ask.port, "ask-again.log");
    s.assert_refused(&root, "ok3.customers.example.com", "no_cert_yet")
        .await;
    s.wait_for_cert("ok3.customers.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(
        s.pebble.orders(),
        orders_after_first + 1,
        "ok2 was ordered during the outage"
    );
    assert_eq!(ask.names(), ["ok3.customers.example.com"]);
    assert!(
        s.cert_status("ok2.customers.example.com").await["state"] != "valid",
        "{}",
        s.certs().await
    );
    tls_connect(s.ports.https, "ok1.customers.example.com", &root)
        .await
        .unwrap();
}

/// `edge_acme_ask_total{outcome}`.
async fn asked(s: &Setup, outcome: &str) -> f64 {
    s.edge
        .metric("edge_acme_ask_total", &[("outcome", outcome)])
        .await
}
