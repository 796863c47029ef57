//! Automatic certificates against a real ACME CA (pebble), verified by a
//! real TLS client that trusts only pebble's root.
//!
//! This file: issuance over both challenges, renewal, key-type change and
//! forced renewal, restart from the store. `acme/guards.rs`: what must never
//! cause an order (random names, failing validation, DNS elsewhere, the
//! issuance limit). `acme/on_demand.rs`: on-demand names and the `ask` endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "acme/guards.rs"]
mod guards;
#[path = "acme/on_demand.rs"]
mod on_demand;
#[path = "acme/setup.rs"]
mod setup;

use std::time::{Duration, Instant};

use edge_tests::pebble::tls_connect;
use edge_tests::*;
use setup::{Setup, unix_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_added_by_reload_get_certificates_over_http01_and_tls_alpn01() {
    let s = Setup::start(3600, &[], "challenges = [\"http-01\"]").await;
    let root = s.pebble.root().await;
    // Nothing is orderable yet (localhost is single-label), and a name the
    // edge does not serve is refused as unknown.
    s.assert_refused(&root, "h1.example.com", "unknown_sni")
        .await;

    // HTTP-01: add the domain, reload, and the certificate appears.
    s.reload(&["h1.example.com"], "challenges = [\"http-01\"]")
        .await;
    let started = Instant::now();
    let served = s
        .wait_for_cert("h1.example.com", Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    assert!(served.chain.len() >= 2, "leaf and intermediate expected");
    // The order for h1 is the positive control: an order for localhost
    // (before the reload) would have been placed before it and counted here.
    assert_eq!(s.pebble.orders(), 1, "only h1.example.com was ordered");
    assert_eq!(s.orders("http-01", "valid").await, 1.0);
    assert_eq!(s.edge.metric("edge_acme_orders_total", &[]).await, 1.0);
    // Pebble validates from several perspectives, each fetching the token.
    assert!(
        s.edge
            .metric(
                "edge_acme_challenges_served_total",
                &[("challenge", "http-01")]
            )
            .await
            >= 1.0
    );

    // The new certificate carries events end to end, verified by pebble's root.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(root.as_ref()).unwrap()])
        .resolve("h1.example.com", s.ports.https)
        .build()
        .unwrap();
    let r = client
        .post(format!(
            "https://h1.example.com:{}/api/event",
            s.ports.https.port()
        ))
        .body(r#"{"name":"pageview","url":"https://h1.example.com/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Plain HTTP redirects everything but challenges to HTTPS.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("http://{}/api/event.gif?n=pageview", s.ports.http))
        .header("host", "h1.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!(
            "https://h1.example.com:{}/api/event.gif?n=pageview",
            s.ports.https.port()
        )
        .as_str()
    );

    // A token nobody issued, or a token asked for under another host: 404.
    for host in ["h1.example.com", "other.example.com"] {
        let r = no_redirect
            .get(format!(
                "http://{}/.well-known/acme-challenge/not-a-token",
                s.ports.http
            ))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    // TLS-ALPN-01 for a second domain, without touching the first one's connections.
    let kept = tls_connect(s.ports.https, "h1.example.com", &root)
        .await
        .unwrap();
    s.reload(
        &["h1.example.com", "t1.example.com"],
        "challenges = [\"tls-alpn-01\"]",
    )
    .await;
    s.wait_for_cert("t1.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(s.orders("tls-alpn-01", "valid").await, 1.0);
    assert!(
        s.edge
            .metric(
                "edge_tls_handshakes_total",
                &[("outcome", "alpn_challenge")]
            )
            .await
            >= 1.0
    );
    let again = tls_connect(s.ports.https, "h1.example.com", &root)
        .await
        .unwrap();
    assert_eq!(
        kept.serial(),
        again.serial(),
        "the first certificate is untouched"
    );

    // Removing a domain stops serving it: refused as unknown once the
    // reload applied.
    s.reload(&["t1.example.com"], "challenges = [\"tls-alpn-01\"]")
        .await;
    assert_eventually!(
        tls_connect(s.ports.https, "h1.example.com", &root)
            .await
            .is_err(),
        Duration::from_secs(5),
        "h1.example.com is still served after its removal"
    );
    s.assert_refused(&root, "h1.example.com", "unknown_sni")
        .await;
    assert_eq!(s.cert_names().await, ["t1.example.com"]);
    tls_connect(s.ports.https, "t1.example.com", &root)
        .await
        .unwrap();
    let certs = s.certs().await;
    assert_eq!(certs["names"][0]["state"], "valid", "{certs}");
    assert_eq!(
        certs["names"][0]["last_challenge"], "tls-alpn-01",
        "{certs}"
    );
    eprintln!("first certificate after reload took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_before_expiry_without_failed_handshakes() {
    // 30 s certificates renewed with half their lifetime left: a renewal
    // about 15 s after issuance.
    let s = Setup::start(
        30,
        &["renew.example.com"],
        "renew_remaining_fraction = 0.5\nmax_orders_per_name_per_day = 100",
    )
    .await;
    let root = s.pebble.root().await;
    let first = s
        .wait_for_cert("renew.example.com", Duration::from_secs(30))
        .await;
    let first_serial = first.serial();
    let deadline = first.not_after();
    let mut handshakes = 0u32;
    let mut renewed = None;
    while renewed.is_none() {
        assert!(
            unix_now() < deadline,
            "no renewal before the first certificate expired:\n{}",
            s.edge.log()
        );
        let served = tls_connect(s.ports.https, "renew.example.com", &root)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during renewal: {e}"));
        handshakes += 1;
        if served.serial() != first_serial {
            renewed = Some(served);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = renewed.unwrap();
    assert!(renewed.not_after() > deadline);
    assert!(handshakes > 20, "only {handshakes} handshakes observed");
    assert_eq!(
        s.edge
            .metric("edge_acme_renewals_total", &[("outcome", "renewed")])
            .await,
        1.0
    );
    let expiry = s
        .edge
        .metric("edge_tls_certificate_expiry_seconds", &[("site", "s")])
        .await;
    assert!(expiry > 0.0 && expiry <= 31.0, "expiry gauge {expiry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_stored_certificates_without_new_orders_and_keys_are_encrypted() {
    let mut s = Setup::start(3600, &["keep.example.com"], "").await;
    let first = s
        .wait_for_cert("keep.example.com", Duration::from_secs(30))
        .await;
    assert!(s.edge.terminate(Duration::from_secs(10)));
    let orders = s.pebble.orders();

    // Stored files: 0600, the chain readable, the private key sealed.
    let certs_dir = s.dir.path().join("data/acme/certs");
    let file = certs_dir.join("keep.example.com.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&certs_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "plaintext key on disk");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sealed = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(doc["key_sealed"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(&sealed[..7], b"EDGESK1");
    // A PKCS#8 key starts with a DER SEQUENCE; the sealed bytes carry no such structure in clear.
    assert!(!sealed.windows(4).any(|w| w == [0x30, 0x81, 0x87, 0x02]));
    let accounts: Vec<_> = std::fs::read_dir(s.dir.path().join("data/acme/accounts"))
        .unwrap()
        .collect();
    assert_eq!(accounts.len(), 1);

    // Restart: ready means every stored certificate is served, so the
    // first handshake after /readyz gets it; nothing is ordered for it.
    s.edge = s.config(&["keep.example.com"], "").start().await;
    let root = s.pebble.root().await;
    let again = tls_connect(s.ports.https, "keep.example.com", &root)
        .await
        .unwrap();
    assert_eq!(again.serial(), first.serial());
    assert_eq!(s.edge.metric("edge_acme_certificates", &[]).await, 1.0);
    // Positive control: a name added now is ordered and served; a renewal
    // of keep.example.com started at startup would have come first.
    s.reload(&["keep.example.com", "later.example.com"], "")
        .await;
    s.wait_for_cert("later.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(
        s.pebble.orders(),
        orders + 1,
        "restart placed an order besides later.example.com:\n{}",
        s.edge.log()
    );
    assert_eq!(
        tls_connect(s.ports.https, "keep.example.com", &root)
            .await
            .unwrap()
            .serial(),
        first.serial()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_type_change_and_forced_renewal_replace_the_certificate() {
    let s = Setup::start(3600, &["rekey.example.com"], "").await;
    let first = s
        .wait_for_cert("rekey.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(first.key_curve(), "P-256");

    // A changed key policy renews with the new algorithm, without a restart.
    s.reload(&["rekey.example.com"], "key_type = \"ecdsa-p384\"")
        .await;
    let root = s.pebble.root().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let p384 = loop {
        let served = tls_connect(s.ports.https, "rekey.example.com", &root)
            .await
            .unwrap();
        if served.key_curve() == "P-384" {
            break served;
        }
        assert!(
            Instant::now() < deadline,
            "no P-384 certificate after the key_type change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(p384.serial(), first.serial());

    // An operator-forced renewal (after a revocation or key compromise).
    let renew = |name: &str| admin_post(s.ports.admin, format!("/admin/certs/renew?name={name}"));
    assert_eq!(renew("unknown.example.com").await.status(), 404);
    assert_eq!(renew("rekey.example.com").await.status(), 202);
    assert_eventually!(
        tls_connect(s.ports.https, "rekey.example.com", &root)
            .await
            .unwrap()
            .serial()
            != p384.serial(),
        Duration::from_secs(30),
        "forced renewal did not replace the certificate"
    );
    assert_eq!(
        s.edge
            .metric("edge_acme_renewals_total", &[("outcome", "renewed")])
            .await,
        2.0
    );
}
