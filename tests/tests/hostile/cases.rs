//! The table of hostile-input cases.

use super::probe::*;
use edge_tests::BROWSER_UA;

// === the table ===

pub fn cases() -> Vec<Case> {
    let valid = event("pageview");
    let nul_name = event("evt\u{0}x");
    let big_numbers = format!("[{}]", vec!["1"; 500_000].join(","));
    let batch_101 = format!("[{}]", vec![valid.as_str(); 101].join(","));
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_prop = format!(
        r#"{{"n":"x","u":"https://site1.example/","p":{{"a":{}{}}}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let deep_open = "[".repeat(20_000);
    let pad_40k = "a".repeat(40 * 1024);
    let pad_900k = "b".repeat(900 * 1024);
    let long_target = format!("/api/event.gif?n=x&{QS_MARKER}={}", "c".repeat(20 * 1024));
    let xff: &[u8] = IP_MARKER.as_bytes();
    let ua_marker: &[u8] = UA_MARKER.as_bytes();
    let pixel = |q: &str| format!("/api/event.gif?{q}");
    let ok_pixel = pixel(&format!(
        "n=pageview&u=https%3A%2F%2Fsite1.example%2F%3Fref%3D{EMAIL_ENC}%26utm_source%3D{EMAIL_ENC}%26{QS_MARKER}%3D1"
    ));
    let smuggle = b"0\r\n\r\nGET /api/event.gif?n=smuggled&u=https%3A%2F%2Fsite1.example%2F HTTP/1.1\r\nHost: site1.example\r\n\r\n";

    vec![
        // --- accepted, so the rest is measured against a working edge ---
        Case {
            name: "valid JSON event over TLS h1",
            send: Probe::Tls(post(valid.as_bytes(), &[("X-Forwarded-For", xff)])),
            expect: Expect::Status(202),
            metrics: vec![request("s1", "accepted"), accepted(1.0)],
        },
        Case {
            name: "pixel with ref=e-mail in its URL: accepted, ref dropped",
            send: Probe::Tls(get(&ok_pixel, &[])),
            expect: Expect::Status(200),
            metrics: vec![request("s1", "accepted"), accepted(1.0)],
        },
        Case {
            name: "valid JSON event over h2",
            send: Probe::H2(h2_post(&valid, &[])),
            expect: Expect::Status(202),
            metrics: vec![request("s1", "accepted"), accepted(1.0)],
        },
        // --- control characters in every text field (item 3) ---
        Case {
            name: "NUL in name (JSON)",
            send: Probe::Tls(post(nul_name.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![request("s1", "malformed"), rejection("control_character")],
        },
        Case {
            name: "NUL in name (pixel n=evt%00x)",
            send: Probe::Tls(get(
                &pixel("n=evt%00x&u=https%3A%2F%2Fsite1.example%2F"),
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![request("s1", "malformed"), rejection("control_character")],
        },
        Case {
            name: "DEL in url",
            send: Probe::Tls(post(
                br#"{"n":"pageview","u":"https://site1.example/a\u007fb"}"#,
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("control_character")],
        },
        Case {
            name: "C1 control in a property value",
            send: Probe::Tls(post(
                br#"{"n":"pageview","u":"https://site1.example/","p":{"k":"a\u0085b"}}"#,
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("control_character")],
        },
        Case {
            name: "newline in a property key",
            send: Probe::Tls(post(
                br#"{"n":"pageview","u":"https://site1.example/","p":{"a\nb":"v"}}"#,
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("control_character")],
        },
        Case {
            name: "tab in referrer (pixel)",
            send: Probe::Tls(get(
                &pixel("n=x&u=https%3A%2F%2Fsite1.example%2F&r=https%3A%2F%2Fr.example%2F%09x"),
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("control_character")],
        },
        Case {
            name: "NUL in name over h2",
            send: Probe::H2(h2_post(&nul_name, &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("control_character")],
        },
        // --- sizes (items 1, 2) ---
        Case {
            name: "1 MB array of 500k numbers: refused while parsing",
            send: Probe::Tls(post(big_numbers.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("batch_too_large")],
        },
        Case {
            name: "batch of 101 events",
            send: Probe::Tls(post(batch_101.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("batch_too_large")],
        },
        Case {
            name: "declared body above max_body_bytes",
            send: Probe::Tls(post_with(
                &[
                    ("Content-Type", b"application/json"),
                    ("Content-Length", b"5000000"),
                ],
                b"",
            )),
            expect: Expect::StatusThenClose(413),
            metrics: vec![request("s1", "payload_too_large")],
        },
        Case {
            name: "40 KiB header: head above 32 KiB",
            send: Probe::Tls(get("/api/event.gif", &[("X-Pad", pad_40k.as_bytes())])),
            expect: Expect::StatusThenClose(431),
            metrics: vec![request("-", "head_too_large")],
        },
        Case {
            name: "900 KB header",
            send: Probe::Tls(get("/", &[("X-Pad", pad_900k.as_bytes())])),
            expect: Expect::StatusThenClose(431),
            // Over 64 KiB the connection layer answers before Pingora parses
            // the head: a client fault, not a routed request.
            metrics: vec![
                delta(
                    "edge_client_faults_total",
                    &[("kind", "head_too_large")],
                    1.0,
                ),
                no_request(),
            ],
        },
        Case {
            name: "20 KiB request target",
            send: Probe::Tls(get(&long_target, &[])),
            expect: Expect::StatusThenClose(414),
            metrics: vec![request("-", "uri_too_long")],
        },
        Case {
            name: "40 KiB header over h2",
            send: Probe::H2(h2_req("GET", "/", &[("x-pad", pad_40k.as_bytes())])),
            expect: Expect::Status(431),
            metrics: vec![request("-", "head_too_large")],
        },
        Case {
            name: "long unknown path: 404 without echo",
            send: Probe::Tls(get(&format!("/{QS_MARKER}/{EMAIL}?{QS_MARKER}"), &[])),
            expect: Expect::Status(404),
            metrics: vec![request("s1", "not_found")],
        },
        // --- headers (item 7) ---
        Case {
            name: "Content-Type with a non-ASCII byte",
            send: Probe::Tls(post_with(
                &[
                    ("User-Agent", BROWSER_UA.as_bytes()),
                    ("Content-Type", b"application/json\xff"),
                    ("Content-Length", valid.len().to_string().as_bytes()),
                ],
                valid.as_bytes(),
            )),
            expect: Expect::StatusThenClose(415),
            metrics: vec![header_rejection("content-type", "unreadable")],
        },
        Case {
            name: "Origin with a non-ASCII byte does not bypass the allow-list",
            send: Probe::Tls(post(
                valid.as_bytes(),
                &[("Origin", b"https://evil.example\xff")],
            )),
            expect: Expect::StatusThenClose(403),
            metrics: vec![header_rejection("origin", "unreadable")],
        },
        Case {
            name: "User-Agent with a non-ASCII byte",
            send: Probe::Tls(post_with(
                &[
                    ("User-Agent", b"Mozilla/5.0 \xc3\xa9"),
                    ("Content-Type", b"application/json"),
                    ("Content-Length", valid.len().to_string().as_bytes()),
                ],
                valid.as_bytes(),
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("user-agent", "unreadable")],
        },
        Case {
            name: "Referer with a non-ASCII byte",
            send: Probe::Tls(post(
                valid.as_bytes(),
                &[("Referer", b"https://r.example/\xff")],
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("referer", "unreadable")],
        },
        Case {
            name: "If-None-Match with a non-ASCII byte on the tracker",
            send: Probe::Tls(get("/js/script.js", &[("If-None-Match", b"\"\xff\"")])),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("if-none-match", "unreadable")],
        },
        Case {
            name: "Host with a non-ASCII byte",
            send: Probe::Tls(raw("GET", "/", &[("Host", b"site1.example\xff")], b"")),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("host", "unreadable")],
        },
        Case {
            name: "two Host headers (Pingora refuses)",
            send: Probe::Tls(raw(
                "GET",
                "/js/script.js",
                &[("Host", HOST.as_bytes()), ("Host", b"site2.example")],
                b"",
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![no_request()],
        },
        Case {
            name: "identical duplicate Content-Length",
            send: Probe::Tls(post(
                valid.as_bytes(),
                &[("Content-Length", valid.len().to_string().as_bytes())],
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("content-length", "repeated")],
        },
        Case {
            name: "Content-Length as a list",
            send: Probe::Tls(post_with(
                &[
                    ("User-Agent", BROWSER_UA.as_bytes()),
                    (
                        "Content-Length",
                        format!("{0}, {0}", valid.len()).as_bytes(),
                    ),
                ],
                valid.as_bytes(),
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![header_rejection("content-length", "repeated")],
        },
        Case {
            name: "conflicting Content-Length values (Pingora refuses)",
            send: Probe::Tls(post(valid.as_bytes(), &[("Content-Length", b"3")])),
            expect: Expect::StatusThenClose(400),
            metrics: vec![no_request()],
        },
        Case {
            name: "Content-Type with a non-ASCII byte over h2",
            send: Probe::H2(H2Req {
                headers: vec![
                    ("user-agent", BROWSER_UA.as_bytes().to_vec()),
                    ("content-type", b"text/plain\xff".to_vec()),
                ],
                ..h2_post(&valid, &[])
            }),
            expect: Expect::Status(415),
            metrics: vec![header_rejection("content-type", "unreadable")],
        },
        Case {
            name: "Origin not on the allow-list: 403 without echo",
            send: Probe::Tls(post(
                valid.as_bytes(),
                &[("Origin", format!("https://{QS_MARKER}.example").as_bytes())],
            )),
            expect: Expect::Status(403),
            metrics: vec![request("s1", "origin_forbidden")],
        },
        Case {
            name: "text/html content type",
            send: Probe::Tls(post_with(
                &[
                    ("Content-Type", b"text/html"),
                    ("Content-Length", valid.len().to_string().as_bytes()),
                ],
                valid.as_bytes(),
            )),
            expect: Expect::StatusThenClose(415),
            metrics: vec![request("s1", "unsupported_media_type")],
        },
        // --- smuggling shapes ---
        Case {
            name: "CL + TE chunked: chunked wins, the smuggled request is never answered",
            send: Probe::Tls(post_with(
                &[
                    ("User-Agent", BROWSER_UA.as_bytes()),
                    ("Content-Length", b"4"),
                    ("Transfer-Encoding", b"chunked"),
                ],
                smuggle,
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![rejection("malformed_json"), accepted(0.0)],
        },
        Case {
            name: "TE chunked with a non-hex chunk size",
            send: Probe::Tls(post_with(
                &[("Transfer-Encoding", b"chunked")],
                b"zz\r\nabc\r\n0\r\n\r\n",
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![request("s1", "malformed")],
        },
        Case {
            name: "TE chunked with an overflowing chunk size",
            send: Probe::Tls(post_with(
                &[("Transfer-Encoding", b"chunked")],
                b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![request("s1", "malformed")],
        },
        Case {
            name: "TE gzip, chunked is not final (Pingora refuses)",
            send: Probe::Tls(post_with(
                &[("Transfer-Encoding", b"chunked, gzip")],
                b"0\r\n\r\n",
            )),
            expect: Expect::StatusThenClose(400),
            metrics: vec![no_request()],
        },
        Case {
            name: "obs-fold header line (Pingora refuses)",
            send: Probe::Tls(
                b"GET /js/script.js HTTP/1.1\r\nHost: site1.example\r\nX-A: a\r\n  folded\r\n\r\n"
                    .to_vec(),
            ),
            expect: Expect::StatusThenClose(400),
            metrics: vec![no_request()],
        },
        Case {
            name: "absolute-form URI naming a foreign host (Pingora refuses)",
            send: Probe::Tls(raw(
                "POST",
                "http://evil.example/api/event",
                &[
                    ("Host", HOST.as_bytes()),
                    ("Content-Length", valid.len().to_string().as_bytes()),
                ],
                valid.as_bytes(),
            )),
            expect: Expect::Status(400),
            metrics: vec![no_request()],
        },
        Case {
            name: "unknown Host: 421 without echo",
            send: Probe::Tls(raw(
                "GET",
                "/",
                &[("Host", format!("{QS_MARKER}.example").as_bytes())],
                b"",
            )),
            expect: Expect::Status(421),
            metrics: vec![request("-", "unknown_host")],
        },
        Case {
            name: ":authority naming a foreign host over h2",
            send: Probe::H2(H2Req {
                uri: "https://evil.example/api/event".into(),
                ..h2_post(&valid, &[])
            }),
            expect: Expect::Status(421),
            metrics: vec![request("-", "unknown_host")],
        },
        // --- JSON shapes ---
        Case {
            name: "body that is not UTF-8",
            send: Probe::Tls(post(
                b"{\"n\":\"\xff\xfe\",\"u\":\"https://site1.example/\"}",
                &[],
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("malformed_json")],
        },
        Case {
            name: "20,000 levels of nesting as a batch element",
            send: Probe::Tls(post(deep.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("not_an_object")],
        },
        Case {
            name: "20,000 levels of nesting in a property value",
            send: Probe::Tls(post(deep_prop.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("invalid_field")],
        },
        Case {
            name: "unbalanced nesting",
            send: Probe::Tls(post(deep_open.as_bytes(), &[])),
            expect: Expect::Status(400),
            metrics: vec![rejection("malformed_json")],
        },
        // --- methods ---
        Case {
            name: "unknown method",
            send: Probe::Tls(raw("FOO", "/api/event", &[("Host", HOST.as_bytes())], b"")),
            expect: Expect::Status(405),
            metrics: vec![request("s1", "method_not_allowed")],
        },
        Case {
            name: "TRACE on the event route",
            send: Probe::Tls(raw(
                "TRACE",
                "/api/event",
                &[("Host", HOST.as_bytes())],
                b"",
            )),
            expect: Expect::Status(405),
            metrics: vec![request("s1", "method_not_allowed")],
        },
        Case {
            name: "CONNECT (Pingora refuses)",
            send: Probe::Tls(raw(
                "CONNECT",
                "site1.example:443",
                &[("Host", HOST.as_bytes())],
                b"",
            )),
            expect: Expect::StatusThenClose(405),
            metrics: vec![no_request()],
        },
        Case {
            name: "HEAD on the pixel ingests nothing (item 6)",
            send: Probe::Tls(raw(
                "HEAD",
                &ok_pixel,
                &[
                    ("Host", HOST.as_bytes()),
                    ("User-Agent", BROWSER_UA.as_bytes()),
                ],
                b"",
            )),
            expect: Expect::Status(200),
            metrics: vec![request("s1", "pixel_head"), accepted(0.0)],
        },
        Case {
            name: "rejected request with planted UA, address and query (capture check)",
            send: Probe::Tls(raw(
                "GET",
                &pixel(&format!("n=x&email={EMAIL_ENC}&{QS_MARKER}=1")),
                &[
                    ("Host", HOST.as_bytes()),
                    ("User-Agent", ua_marker),
                    ("X-Forwarded-For", xff),
                    ("Forwarded", format!("for={IP_MARKER}").as_bytes()),
                ],
                b"",
            )),
            expect: Expect::Status(400),
            metrics: vec![rejection("unknown_field")],
        },
        // --- plain HTTP (item 8) ---
        Case {
            name: "plain HTTP redirect for a site host",
            send: Probe::Plain(get("/x", &[])),
            expect: Expect::Status(308),
            metrics: vec![request("-", "redirect")],
        },
        Case {
            name: "plain HTTP: foreign Host is not redirected",
            send: Probe::Plain(raw("GET", "/x", &[("Host", b"evil.example:8443")], b"")),
            expect: Expect::Status(421),
            metrics: vec![request("-", "unknown_host")],
        },
        Case {
            name: "plain HTTP: unknown ACME token",
            send: Probe::Plain(get("/.well-known/acme-challenge/nope", &[])),
            expect: Expect::Status(404),
            metrics: vec![request("-", "not_found")],
        },
        Case {
            name: "plain HTTP: a TLS ClientHello on the plain port",
            send: Probe::Plain(
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
            ),
            expect: Expect::StatusThenClose(400),
            metrics: vec![no_request()],
        },
        // --- TLS and ALPN (item 9) ---
        Case {
            name: "ALPN acme-tls/1,foo does not get the challenge protocol",
            send: Probe::Handshake(Some(HOST), &["acme-tls/1", "foo"]),
            expect: Expect::Refused,
            metrics: vec![handshake("alpn_refused")],
        },
        Case {
            name: "ALPN acme-tls/1 alone without a pending challenge",
            send: Probe::Handshake(Some(HOST), &["acme-tls/1"]),
            expect: Expect::Refused,
            metrics: vec![handshake("alpn_refused")],
        },
        Case {
            name: "ALPN acme-tls/1,http/1.1 negotiates HTTP",
            send: Probe::Handshake(Some(HOST), &["acme-tls/1", "http/1.1"]),
            expect: Expect::Status(0),
            metrics: vec![handshake("ok")],
        },
        Case {
            name: "no SNI",
            send: Probe::Handshake(None, &["http/1.1"]),
            expect: Expect::Refused,
            metrics: vec![handshake("no_sni")],
        },
        Case {
            name: "unknown SNI",
            send: Probe::Handshake(Some("unknown.example"), &["http/1.1"]),
            expect: Expect::Refused,
            metrics: vec![handshake("unknown_sni")],
        },
        // --- HTTP/2 frames ---
        Case {
            name: "h2: bad HPACK (index beyond both tables)",
            send: Probe::H2Raw({
                let mut b = h2_start();
                b.extend(frame(0x1, END_HEADERS | END_STREAM, 1, &[0xbf, 0x7f, 0x7f]));
                b
            }),
            expect: Expect::GoAway,
            metrics: vec![no_request()],
        },
        Case {
            name: "h2: DATA on stream 0",
            send: Probe::H2Raw({
                let mut b = h2_start();
                b.extend(frame(0x0, 0, 0, b"x"));
                b
            }),
            expect: Expect::GoAway,
            metrics: vec![no_request()],
        },
        Case {
            name: "h2: garbage instead of the preface",
            send: Probe::H2Raw(b"GET / HTTP/1.1\r\nHost: site1.example\r\n\r\n".to_vec()),
            expect: Expect::GoAway,
            metrics: vec![no_request()],
        },
        Case {
            name: "h2: rapid reset flood (2,000 streams opened and cancelled)",
            send: Probe::H2Raw(h2_rst_flood(2_000)),
            expect: Expect::GoAway,
            metrics: vec![accepted(0.0)],
        },
        Case {
            name: "h2: 1,000 concurrent streams that never send their body",
            send: Probe::H2Raw(h2_many_streams(1_000)),
            expect: Expect::RefusedStreams,
            metrics: vec![accepted(0.0)],
        },
        Case {
            name: "h2: even (server-initiated) stream id from the client",
            send: Probe::H2Raw({
                let mut b = h2_start();
                b.extend(frame(
                    0x1,
                    END_HEADERS | END_STREAM,
                    2,
                    &hpack_request(false, "/js/script.js"),
                ));
                b
            }),
            expect: Expect::GoAway,
            metrics: vec![no_request()],
        },
        Case {
            name: "h2: NUL in the pixel query through hand-made frames",
            send: Probe::H2Raw({
                let mut b = h2_start();
                b.extend(frame(
                    0x1,
                    END_HEADERS | END_STREAM,
                    1,
                    &hpack_request(false, "/api/event.gif?n=a%00&u=https%3A%2F%2Fa.example%2F"),
                ));
                b
            }),
            expect: Expect::RefusedStreams,
            metrics: vec![rejection("control_character")],
        },
    ]
}
