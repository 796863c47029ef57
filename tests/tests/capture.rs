//! Traffic capture against a live edge: event requests from three client
//! addresses are written as anonymised NDJSON (pseudonyms, no query strings
//! but utm, allow-listed headers, mode 0600), and the file replays with the
//! real `edge-loadtest` to the same status counts.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use edge_tests::*;

const TOPIC: &str = "capture-events";

/// One request of the test mix: who sends it, and what.
enum Req {
    Post {
        host: &'static str,
        body: &'static str,
        content_type: &'static str,
    },
    Get {
        host: &'static str,
        path: &'static str,
    },
}

async fn send(client: &reqwest::Client, base: &str, req: &Req) -> u16 {
    let r = match req {
        Req::Post {
            host,
            body,
            content_type,
        } => client
            .post(format!("{base}/api/event"))
            .header("host", *host)
            .header("content-type", *content_type)
            .header("origin", format!("https://{host}"))
            .header(
                "referer",
                format!("https://{host}/cart?session=secret-s1#frag"),
            )
            .header("cookie", "sid=secret-cookie")
            .header("authorization", "Bearer secret-token")
            .header("x-forwarded-for", "198.51.100.99")
            .header("forwarded", "for=198.51.100.98")
            .body(*body),
        Req::Get { host, path } => client
            .get(format!("{base}{path}"))
            .header("host", *host)
            .header("cookie", "sid=secret-cookie"),
    };
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_traffic_is_anonymised_and_replays_to_the_same_statuses() {
    // Relative: resolves against the config file's directory.
    let (dir, _broker, edge) = two_site_edge(
        tempfile::tempdir().unwrap(),
        TOPIC,
        None,
        "[capture]\nfile = \"capture/traffic.ndjson\"\nsample_rate = 1.0\n",
    )
    .await;
    let base = format!("http://{}", edge.ports.http);
    let capture = dir.path().join("capture/traffic.ndjson");
    assert!(capture.exists(), "created at startup");

    let clients = [
        client_from("127.0.0.2"),
        client_from("127.0.0.3"),
        client_from("127.0.0.4"),
    ];
    let json = "application/json";
    // (client, request): event requests, in order.
    let mix: Vec<(usize, Req)> = vec![
        (
            0,
            Req::Post {
                host: "site1.example",
                body: r#"{"name":"pageview","url":"https://site1.example/landing?email=secret%40mail.example&utm_source=news#top","referrer":"https://search.example/?q=secret-query"}"#,
                content_type: json,
            },
        ),
        (
            1,
            Req::Post {
                host: "site2.example",
                body: r#"[{"n":"pageview","u":"https://site2.example/a?token=secret-t"},{"n":"signup","u":"https://site2.example/join","p":{"plan":"pro"}}]"#,
                content_type: json,
            },
        ),
        (
            2,
            Req::Get {
                host: "site1.example",
                path: "/api/event.gif?n=pageview&u=https%3A%2F%2Fsite1.example%2Fnoscript%3Ftoken%3Dsecret-px%26utm_campaign%3Dspring&r=https%3A%2F%2Fref.example%2F%3Fid%3Dsecret-r",
            },
        ),
        (
            0,
            Req::Post {
                host: "site1.example",
                body: r#"{"name":"#,
                content_type: json,
            },
        ),
        (
            1,
            Req::Get {
                host: "site2.example",
                path: "/api/event.gif?n=pageview&u=https%3A%2F%2Fsite2.example%2F",
            },
        ),
        (
            2,
            Req::Post {
                host: "site2.example",
                body: r#"{"name":"pageview","url":"https://site2.example/b"}"#,
                content_type: json,
            },
        ),
        (
            0,
            Req::Post {
                host: "site1.example",
                body: r#"{"name":"cta","url":"https://site1.example/c?x=secret-x"}"#,
                content_type: "text/plain",
            },
        ),
        (
            0,
            Req::Get {
                host: "site1.example",
                path: "/api/event.gif?u=https%3A%2F%2Fsite1.example%2F",
            },
        ),
    ];
    let mut statuses = Vec::new();
    for (c, req) in &mix {
        statuses.push(send(&clients[*c], &base, req).await);
    }
    assert_eq!(statuses, [202, 202, 200, 400, 200, 202, 202, 400]);
    // Only requests whose events passed validation are captured.
    let captured_mix: Vec<(usize, &Req)> = mix
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| **s != 400)
        .map(|((c, r), _)| (*c, r))
        .collect();
    let captured_statuses: Vec<u16> = statuses.iter().copied().filter(|s| *s != 400).collect();
    // Not event requests (or no site): never captured.
    let other = [
        send(
            &clients[0],
            &base,
            &Req::Get {
                host: "site1.example",
                path: "/wp-login.php",
            },
        )
        .await,
        send(
            &clients[1],
            &base,
            &Req::Get {
                host: "unknown.example",
                path: "/api/event.gif?n=x&u=https%3A%2F%2Fa.example%2F",
            },
        )
        .await,
    ];
    assert_eq!(other, [404, 421]);

    let read_lines = || {
        std::fs::read_to_string(&capture)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Positive control: a marker event sent after every other request. The
    // capture writer keeps arrival order, so once the marker's line is in
    // the file, a line for any earlier request would be there too.
    let marker = Req::Post {
        host: "site2.example",
        body: r#"{"name":"pageview","url":"https://site2.example/capture-marker"}"#,
        content_type: json,
    };
    assert_eq!(send(&clients[2], &base, &marker).await, 202);
    assert_eventually!(
        read_lines().iter().any(|l| l.contains("capture-marker")),
        Duration::from_secs(10),
        "the marker was not captured; capture has {} lines:\n{}",
        read_lines().len(),
        edge.log()
    );
    let all = read_lines();
    assert_eq!(
        all.len(),
        captured_mix.len() + 1,
        "one line per accepted event request, then the marker:\n{}",
        all.join("\n")
    );
    assert!(all[captured_mix.len()].contains("capture-marker"));
    assert_eq!(
        edge.metric("edge_capture_records_total", &[("outcome", "written")])
            .await,
        all.len() as f64
    );
    // The rest of the test looks at the mix only.
    let text = all[..captured_mix.len()].join("\n") + "\n";
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(std::fs::metadata(&capture).unwrap().mode() & 0o777, 0o600);

    // Nothing identifying: no raw address, no secret from a query, cookie,
    // authorization or forwarding header.
    for needle in [
        "127.0.0.",
        "198.51.100.",
        "secret",
        "cookie",
        "authorization",
        "forwarded",
    ] {
        assert!(
            !text.to_ascii_lowercase().contains(needle),
            "{needle:?} in:\n{text}"
        );
    }
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &records {
        let path = r["path"].as_str().unwrap();
        if r["method"] == "POST" {
            assert_eq!(path, "/api/event", "{r}");
        }
        let headers = r["headers"].as_object().unwrap();
        for name in headers.keys() {
            assert!(
                ["content-type", "origin", "referer", "user-agent"].contains(&name.as_str()),
                "{name}"
            );
        }
        assert_eq!(headers["user-agent"], BROWSER_UA, "{r}");
    }
    // Query strings survive only as utm tags (and the pixel's own event query).
    assert_eq!(
        records[0]["headers"]["referer"],
        "https://site1.example/cart"
    );
    let body0: serde_json::Value =
        serde_json::from_str(records[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body0["url"],
        "https://site1.example/landing?utm_source=news"
    );
    assert_eq!(body0["referrer"], "https://search.example/");
    let body1: serde_json::Value =
        serde_json::from_str(records[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body1[0]["url"], "https://site2.example/a");
    assert_eq!(
        records[2]["path"],
        "/api/event.gif?n=pageview&u=https%3A%2F%2Fsite1.example%2Fnoscript%3Futm_campaign%3Dspring&r=https%3A%2F%2Fref.example%2F"
    );
    assert!(records[3].get("body").is_none(), "a pixel has no body");
    assert_eq!(records[2]["host"], "site1.example");

    // Pseudonyms: 10.x, one per client, stable across its requests.
    let ips: Vec<&str> = records
        .iter()
        .map(|r| r["client_ip"].as_str().unwrap())
        .collect();
    for ip in &ips {
        let ip: std::net::Ipv4Addr = ip.parse().unwrap();
        assert_eq!(ip.octets()[0], 10);
    }
    for (i, (c, _)) in captured_mix.iter().enumerate() {
        for (j, (d, _)) in captured_mix.iter().enumerate() {
            assert_eq!(c == d, ips[i] == ips[j], "requests {i} and {j}: {ips:?}");
        }
    }
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 3);

    // The captured file replays unchanged, to the same statuses.
    let replay_file = dir.path().join("replay.ndjson");
    std::fs::write(&replay_file, &text).unwrap();
    let out = Command::new(bin("edge-loadtest"))
        .args(["replay"])
        .arg(&replay_file)
        .args(["--target", &base, "--max", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |f: fn(u16) -> bool| captured_statuses.iter().filter(|s| f(**s)).count() as u64;
    assert_eq!(summary["sent"], captured_mix.len() as u64, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(
        summary["status"]["2xx"],
        count(|s| (200..300).contains(&s)),
        "{summary}"
    );
    assert_eq!(
        summary["status"]["4xx"],
        count(|s| (400..500).contains(&s) && s != 429),
        "{summary}"
    );
    assert_eq!(summary["status"]["429"], count(|s| s == 429), "{summary}");
    assert_eq!(summary["status"]["5xx"], 0, "{summary}");
}
