//! The admin API of the real `edge` and the `/stats` endpoint of the real
//! `edge-backend aggregate`, probed as a web page, a DNS-rebinding attacker
//! and a careless operator would. Every case asserts the status and the
//! counter that recorded it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt;

use edge_tests::pebble::write_storage_key;
use support::aggregate::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request to the admin API and what must come of it.
struct Case<'a> {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'a [(&'static str, &'a str)],
    status: u16,
    /// `edge_admin_refused_total{reason}` that must grow by one (`None`:
    /// the request is served and no refusal is counted).
    refused: Option<&'static str>,
}

const SITE_NAME: &str = "renew.example";
const ASK_URL: &str = "http://opsuser:pa55word@127.0.0.1:9/ask?api_key=k3y-s3cret";
const OAUTH_CONFIG: &str = "principal=edge clientSecret=oauth-s3cret";

/// An edge with `[acme]` (its CA unreachable: no order ever starts, so
/// forced renewals only meet the admin API's own limit), an `ask_url` with
/// credentials, and Kafka properties holding a secret.
async fn start_edge(dir: &tempfile::TempDir) -> (Broker, EdgeUnderTest, Edge) {
    let broker = Broker::start();
    broker.create_topic("hostile-admin", 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let storage_key = dir.path().join("storage.key");
    write_storage_key(&storage_key);
    let acme = format!(
        "[acme]\ndirectory_url = \"https://127.0.0.1:{ca}/directory\"\n\
         storage_key_file = {storage:?}\n\
         [acme.on_demand]\nask_url = {ASK_URL:?}\n",
        ca = free_port(),
        storage = storage_key.display().to_string(),
    );
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, "hostile-admin", &key)
        .site("s", &[SITE_NAME, "*.customers.example"])
        .raw(&acme)
        .section(
            "kafka.properties",
            &format!(
                "\"client.id\" = \"edge-hostile\"\n\"sasl.oauthbearer.config\" = {OAUTH_CONFIG:?}"
            ),
        );
    let edge = config.start().await;
    (broker, config, edge)
}

async fn send(
    edge: &Edge,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("http://{}{path}", edge.ports.admin),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if method == "POST" {
        req = req.body("reload=1");
    }
    req.send().await.unwrap()
}

async fn refused(edge: &Edge, reason: &str) -> f64 {
    edge.metric("edge_admin_refused_total", &[("reason", reason)])
        .await
}

/// Runs `cases` in order, checking each status and counter.
async fn run(edge: &Edge, cases: &[Case<'_>]) {
    for c in cases {
        let before = match c.refused {
            Some(reason) => refused(edge, reason).await,
            None => edge.metric("edge_admin_refused_total", &[]).await,
        };
        let r = send(edge, c.method, c.path, c.headers).await;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {body}", c.what);
        let after = match c.refused {
            Some(reason) => refused(edge, reason).await,
            None => edge.metric("edge_admin_refused_total", &[]).await,
        };
        let want = if c.refused.is_some() { 1.0 } else { 0.0 };
        assert_eq!(after - before, want, "{}: refusal counter", c.what);
        assert!(
            !body.contains("pa55word") && !body.contains("oauth-s3cret"),
            "{}: a secret leaked: {body}",
            c.what
        );
    }
}

/// An HTTP/1.0 request without a `Host` header, over a raw socket.
async fn without_host(edge: &Edge, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(edge.ports.admin)
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_browsers_foreign_hosts_and_unmarked_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, _, edge) = start_edge(&dir).await;
    let rebind = format!("rebind.evil.example:{}", edge.ports.admin.port());
    let rebind = rebind.as_str();
    let cases = [
        Case {
            what: "foreign Host",
            method: "GET",
            path: "/admin/config",
            headers: &[("host", "evil.example")],
            status: 421,
            refused: Some("foreign_host"),
        },
        Case {
            what: "DNS-rebinding Host (the attacker's name, the admin port)",
            method: "GET",
            path: "/admin/config",
            headers: &[("host", rebind)],
            status: 421,
            refused: Some("foreign_host"),
        },
        Case {
            what: "rebinding on a write",
            method: "POST",
            path: "/admin/reload",
            headers: &[("host", rebind), ("x-edge-admin", "1")],
            status: 421,
            refused: Some("foreign_host"),
        },
        Case {
            what: "cross-site POST with text/plain (a form or fetch without preflight)",
            method: "POST",
            path: "/admin/reload",
            headers: &[
                ("origin", "https://evil.example"),
                ("content-type", "text/plain"),
                ("sec-fetch-site", "cross-site"),
            ],
            status: 403,
            refused: Some("origin"),
        },
        Case {
            what: "Origin present on a read",
            method: "GET",
            path: "/admin/config",
            headers: &[("origin", "null")],
            status: 403,
            refused: Some("origin"),
        },
        Case {
            what: "Sec-Fetch-Site: cross-site without Origin",
            method: "GET",
            path: "/admin/config",
            headers: &[("sec-fetch-site", "cross-site")],
            status: 403,
            refused: Some("cross_site"),
        },
        Case {
            what: "Sec-Fetch-Site: same-site",
            method: "GET",
            path: "/metrics",
            headers: &[("sec-fetch-site", "same-site")],
            status: 403,
            refused: Some("cross_site"),
        },
        Case {
            what: "GET on reload",
            method: "GET",
            path: "/admin/reload",
            headers: &[],
            status: 405,
            refused: Some("method"),
        },
        Case {
            what: "PUT on renew",
            method: "PUT",
            path: "/admin/certs/renew?name=renew.example",
            headers: &[("x-edge-admin", "1")],
            status: 405,
            refused: Some("method"),
        },
        Case {
            what: "POST without token or X-Edge-Admin",
            method: "POST",
            path: "/admin/reload",
            headers: &[("content-type", "text/plain")],
            status: 403,
            refused: Some("admin_header"),
        },
        Case {
            what: "POST with X-Edge-Admin: 0",
            method: "POST",
            path: "/admin/reload",
            headers: &[("x-edge-admin", "0")],
            status: 403,
            refused: Some("admin_header"),
        },
        Case {
            what: "POST with X-Edge-Admin: 1",
            method: "POST",
            path: "/admin/reload",
            headers: &[("x-edge-admin", "1")],
            status: 200,
            refused: None,
        },
        Case {
            what: "loopback name with another port (an SSH tunnel)",
            method: "GET",
            path: "/admin/certs",
            headers: &[("host", "localhost:19901"), ("sec-fetch-site", "none")],
            status: 200,
            refused: None,
        },
        Case {
            what: "probes answer any Host",
            method: "GET",
            path: "/healthz",
            headers: &[("host", "10.1.2.3:9901")],
            status: 200,
            refused: None,
        },
    ];
    run(&edge, &cases).await;

    let before = refused(&edge, "no_host").await;
    let answer = without_host(&edge, "/admin/config").await;
    assert_eq!(answer.split_whitespace().nth(1), Some("400"), "{answer}");
    assert_eq!(refused(&edge, "no_host").await - before, 1.0);

    // Counted per endpoint too.
    assert_eq!(
        edge.metric(
            "edge_admin_requests_total",
            &[("endpoint", "reload"), ("status", "2xx")]
        )
        .await,
        1.0
    );
    assert_eq!(
        edge.metric(
            "edge_admin_requests_total",
            &[("endpoint", "refused"), ("status", "4xx")]
        )
        .await,
        10.0,
        "9 refused cases above plus the request without Host"
    );

    // /admin/config: credentials in URLs and unknown Kafka property values
    // are redacted; harmless values are shown.
    let r = send(&edge, "GET", "/admin/config", &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for secret in [
        "opsuser",
        "pa55word",
        "k3y-s3cret",
        "oauth-s3cret",
        "clientSecret",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let config = &config["config"];
    assert_eq!(
        config["acme"]["on_demand"]["ask_url"],
        "http://redacted:redacted@127.0.0.1:9/ask?api_key=redacted"
    );
    let props = &config["kafka"]["properties"];
    assert_eq!(props["sasl.oauthbearer.config"], "<redacted>");
    assert_eq!(props["client.id"], "edge-hostile");
    assert_eq!(
        edge.metric(
            "edge_admin_requests_total",
            &[("endpoint", "config"), ("status", "2xx")]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_renewals_stop_at_the_weekly_limit_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, _, edge) = start_edge(&dir).await;
    let renew =
        |name: &str| admin_post(edge.ports.admin, format!("/admin/certs/renew?name={name}"));
    let outcome = |o: &'static str| {
        let edge = &edge;
        async move {
            edge.metric("edge_acme_forced_renewals_total", &[("outcome", o)])
                .await
        }
    };

    assert_eq!(renew("unknown.example").await.status(), 404);
    assert_eq!(outcome("not_managed").await, 1.0);
    // The default is Let's Encrypt's duplicate-certificate limit: 5 a week.
    for i in 1..=5 {
        let r = renew(SITE_NAME).await;
        assert_eq!(r.status(), 202, "renewal {i}: {}", r.text().await.unwrap());
    }
    assert_eq!(outcome("scheduled").await, 5.0);
    let r = renew(SITE_NAME).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after > 7 * 86_400 - 600 && retry_after <= 7 * 86_400,
        "Retry-After {retry_after}"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("5 forced renewals in the last 7 days")
            && body.contains("acme.max_forced_renewals_per_name_per_week"),
        "{body}"
    );
    assert_eq!(outcome("refused_weekly_limit").await, 1.0);
    assert_eq!(
        outcome("scheduled").await,
        5.0,
        "a refusal schedules nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_replaces_the_header_and_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, config, edge) = start_edge(&dir).await;
    let token = "a-long-enough-admin-token-0123";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    config
        .admin(&format!(
            "token_file = {:?}",
            token_file.display().to_string()
        ))
        .write();
    // The file watcher may apply the change before this request does; then
    // the token is already required and the request gets 401.
    let r = admin_post(edge.ports.admin, "/admin/reload").await;
    let status = r.status().as_u16();
    assert!(
        status == 200 || status == 401,
        "{status}: {}",
        r.text().await.unwrap()
    );
    let config_url = format!("http://{}/admin/config", edge.ports.admin);
    assert_eventually!(
        reqwest::get(&config_url).await.unwrap().status() == 401,
        Duration::from_secs(10),
        "the token is not required after the reload:\n{}",
        edge.log()
    );

    let bearer = format!("Bearer {token}");
    let bearer = bearer.as_str();
    let cases = [
        Case {
            what: "POST with X-Edge-Admin but no token",
            method: "POST",
            path: "/admin/reload",
            headers: &[("x-edge-admin", "1")],
            status: 401,
            refused: Some("token"),
        },
        Case {
            what: "POST with the token (a non-simple header itself)",
            method: "POST",
            path: "/admin/reload",
            headers: &[("authorization", bearer)],
            status: 200,
            refused: None,
        },
        Case {
            what: "the token does not excuse a foreign Host",
            method: "GET",
            path: "/admin/config",
            headers: &[("authorization", bearer), ("host", "rebind.evil.example")],
            status: 421,
            refused: Some("foreign_host"),
        },
    ];
    // /metrics needs the token now: read it with the token.
    let metric = |reason: &'static str| {
        let url = format!("http://{}/metrics", edge.ports.admin);
        async move {
            let text = reqwest::Client::new()
                .get(url)
                .header("authorization", bearer)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            parse_metric(&text, "edge_admin_refused_total", &[("reason", reason)])
        }
    };
    for c in &cases {
        let before = metric(c.refused.unwrap_or("none")).await;
        let r = send(&edge, c.method, c.path, c.headers).await;
        let status = r.status().as_u16();
        assert_eq!(status, c.status, "{}: {}", c.what, r.text().await.unwrap());
        let after = metric(c.refused.unwrap_or("none")).await;
        let want = if c.refused.is_some() { 1.0 } else { 0.0 };
        assert_eq!(after - before, want, "{}", c.what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_endpoint_refuses_foreign_hosts_and_browsers() {
    let s = setup("hostile-stats").await;
    let db = format!(
        "sqlite://{}?mode=rwc",
        s.dir.path().join("agg.db").display()
    );
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, &db, 100);
    assert_eventually!(
        {
            agg.assert_running();
            agg.try_metrics().await.is_some()
        },
        Duration::from_secs(30),
        "the aggregator's HTTP endpoint did not come up:\n{}",
        agg.log()
    );
    let stats = "/stats?site=site-a&from=0&to=now";
    let rebind = format!("rebind.evil.example:{}", agg.http.port());
    // (what, extra headers, status, refusal reason counted)
    type StatsCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, Option<&'a str>);
    let cases: [StatsCase; 6] = [
        ("loopback Host", vec![], 200, None),
        (
            "localhost, another port",
            vec![("host", "localhost:1")],
            200,
            None,
        ),
        (
            "foreign Host",
            vec![("host", "evil.example")],
            421,
            Some("foreign_host"),
        ),
        (
            "DNS rebinding",
            vec![("host", rebind.as_str())],
            421,
            Some("foreign_host"),
        ),
        (
            "a web page's fetch",
            vec![("origin", "https://evil.example")],
            403,
            Some("origin"),
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("sec-fetch-site", "cross-site")],
            403,
            Some("cross_site"),
        ),
    ];
    for (what, headers, want, reason) in cases {
        let count = |text: &str| {
            parse_metric(
                text,
                "edge_backend_http_refused_total",
                &[("reason", reason.unwrap_or("none"))],
            )
        };
        let before = count(&agg.try_metrics().await.unwrap());
        let mut req = reqwest::Client::new().get(format!("http://{}{stats}", agg.http));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, want, "{what}: {body}");
        if want == 200 {
            assert!(body.contains("\"totals\""), "{what}: {body}");
        } else {
            assert!(!body.contains("\"totals\""), "{what}: {body}");
        }
        let after = count(&agg.try_metrics().await.unwrap());
        let delta = if reason.is_some() { 1.0 } else { 0.0 };
        assert_eq!(after - before, delta, "{what}: refusal counter");
    }
}
