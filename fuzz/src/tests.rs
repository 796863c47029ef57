//! Replays the committed corpora and regressions through the checks, and
//! (on request) rewrites the seed corpora from the project's fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use edge_envelope::encode_record;

use crate::envelope::{SITE, fixture, sample_record};

/// The check run on each input of a target.
type Check = fn(&[u8]);

/// Every target, the directory name of its corpus and its check.
const TARGETS: &[(&str, Check)] = &[
    ("event_body", crate::check_event_body),
    ("pixel_query", crate::check_pixel_query),
    ("proxy_header", crate::check_proxy_header),
    ("config_load", crate::check_config),
    ("envelope_open", crate::check_envelope),
    ("wire_decode", crate::check_wire),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_regression_passes_its_check() {
    for (target, check) in TARGETS {
        let seeds = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "no seed corpus for {target}");
        let regressions = files_in(&fuzz_dir().join("regressions").join(target));
        for file in seeds.iter().chain(&regressions) {
            let data = fs::read(file).unwrap();
            check(&data);
        }
    }
}

#[test]
fn sealed_seed_envelopes_open_with_the_fixed_key() {
    let seeds = files_in(&fuzz_dir().join("corpus/envelope_open"));
    let opened = seeds
        .iter()
        .map(|p| fs::read(p).unwrap())
        .filter(|d| d.first() == Some(&0))
        .filter(|d| fixture().opener.open(SITE, &d[1..]).is_ok())
        .count();
    assert!(opened >= 2, "only {opened} seed envelopes open");
}

/// Rewrites `corpus/*/seed-*` from the fixtures:
/// `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seed_corpus`.
#[test]
#[ignore = "rewrites the committed seed corpora"]
fn write_seed_corpus() {
    let root = fuzz_dir().join("..");
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();

    // Event bodies and pixel queries of the replay fixture, plus one of
    // every field and limit.
    let replay = fs::read_to_string(root.join("tests/fixtures/edge-replay.ndjson")).unwrap();
    for (i, line) in replay.lines().enumerate() {
        let request: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = request["path"].as_str().unwrap();
        if let Some(body) = request["body"].as_str() {
            seeds.push(("event_body", format!("replay-{i}"), body.into()));
        }
        if let Some((_, query)) = path.split_once('?') {
            seeds.push(("pixel_query", format!("replay-{i}"), query.into()));
        }
    }
    let bodies: &[&str] = &[
        r#"{"n":"signup","u":"https://example.com/a?x=1","r":"https://ref.example/","p":{"plan":"pro","n":3,"ok":true,"x":null},"w":1280,"d":"example.com"}"#,
        r#"[{"name":"pageview","url":"http://example.com/"},{"name":"click","url":"https://example.com/b","referrer":null,"props":null,"screen_width":null}]"#,
        r#"{"name":"pageview","url":"https://example.com/","extra":1}"#,
        r#"{"name":"a\u0000b","url":"https://example.com/\ud83d\ude00"}"#,
    ];
    for (i, body) in bodies.iter().enumerate() {
        seeds.push(("event_body", format!("fields-{i}"), (*body).into()));
    }
    let queries: &[&str] = &[
        "?n=signup&u=https%3A%2F%2Fexample.com%2Fa%3Fx%3D1&r=https%3A%2F%2Fref.example%2F&p=%7B%22plan%22%3A%22pro%22%7D&w=1280",
        "name=pageview&url=http://example.com/&referrer=&props=&screen_width=&domain=example.com",
        "n=evt%00x&u=https%3A%2F%2Fexample.com%2F&p=null",
    ];
    for (i, query) in queries.iter().enumerate() {
        seeds.push(("pixel_query", format!("fields-{i}"), (*query).into()));
    }

    // PROXY headers (v1 and v2, proxied and local) followed by what a
    // client sends next.
    let v1: &[&[u8]] = &[
        b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n\x16\x03\x01",
        b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nGET / HTTP/1.1\r\n",
        b"PROXY UNKNOWN\r\n",
    ];
    for (i, header) in v1.iter().enumerate() {
        seeds.push(("proxy_header", format!("v1-{i}"), header.to_vec()));
    }
    let v2_addresses: [(&str, &str); 2] = [
        ("198.51.100.7:51234", "10.0.0.1:443"),
        ("[2001:db8::7]:5555", "[2001:db8::1]:443"),
    ];
    for (i, (src, dst)) in v2_addresses.iter().enumerate() {
        let addresses: ppp::v2::Addresses = (
            src.parse::<std::net::SocketAddr>().unwrap(),
            dst.parse::<std::net::SocketAddr>().unwrap(),
        )
            .into();
        let mut header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .write_tlv(ppp::v2::Type::Authority, b"example.com")
        .unwrap()
        .build()
        .unwrap();
        header.extend_from_slice(b"\x16\x03\x01");
        seeds.push(("proxy_header", format!("v2-{i}"), header));
    }
    let local = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .unwrap();
    seeds.push(("proxy_header", "v2-local".into(), local));

    // The example configurations.
    for name in ["minimal", "edge"] {
        let text = fs::read(root.join(format!("config/examples/{name}.toml"))).unwrap();
        seeds.push(("config_load", format!("example-{name}"), text));
    }

    // Records, and envelopes sealed to the fixed key (mode byte first).
    let record = sample_record();
    let bare = edge_envelope::EventRecord {
        referrer: None,
        utm: Default::default(),
        props: Vec::new(),
        ..sample_record()
    };
    for (i, r) in [&record, &bare].into_iter().enumerate() {
        seeds.push(("wire_decode", format!("record-{i}"), encode_record(r)));
        let mut sealed = vec![0u8];
        sealed.extend(fixture().sealer.seal(SITE, r).unwrap());
        seeds.push(("envelope_open", format!("sealed-{i}"), sealed));
    }
    let mut plaintext = vec![1u8];
    plaintext.extend(encode_record(&record));
    seeds.push(("envelope_open", "plaintext".into(), plaintext));
    seeds.push(("envelope_open", "tamper".into(), vec![2, 0, 200, 0x01, 128]));

    for (target, name, data) in seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}
