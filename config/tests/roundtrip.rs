//! Property: any valid `Config`, serialized with `toml::to_string`, parses
//! back (through the full load pipeline) to an equal `Config`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use edge_config::defaults::RESERVED_KAFKA_PROPERTIES;
use edge_config::{
    Acme, AcmeKeyType, Admin, BackendKey, BotAction, Bots, Capture, CertificateFiles,
    ChallengeKind, ClientIp, Compression, Config, DnsCheck, Encryption, ForwardedHeader, Kafka,
    KafkaSasl, KafkaTls, Limits, Listeners, PlainHttp, RateLimit, RateLimits, SaslMechanism,
    SharedLimits, Site, SiteRateLimits, Spool, SpoolFsync, Tag, Tls, TlsVersion, parse_str,
    validate,
};
use edge_envelope::keys::PublicKey;
use proptest::prelude::*;

/// An absolute path whose components are names (never `.` or `..`, which
/// name no file: `capture.file` refuses them).
fn abs_path() -> impl Strategy<Value = PathBuf> {
    "/[a-z]{1,8}(/[a-z0-9_-][a-z0-9._-]{0,7}){0,2}".prop_map(PathBuf::from)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

fn listeners() -> impl Strategy<Value = Listeners> {
    (
        proptest::option::of((ip(), 1000u16..2000)),
        proptest::option::of((ip(), 2000u16..3000)),
        any::<bool>(),
    )
        .prop_filter("at least one listener", |(a, b, _)| {
            a.is_some() || b.is_some()
        })
        .prop_map(|(http, https, redirect)| Listeners {
            http: http.map(|(ip, port)| SocketAddr::new(ip, port)),
            https: https.map(|(ip, port)| SocketAddr::new(ip, port)),
            // Redirecting needs an HTTPS listener to redirect to.
            plain_http: if redirect && https.is_some() {
                PlainHttp::Redirect
            } else {
                PlainHttp::Events
            },
        })
}

fn admin() -> impl Strategy<Value = Admin> {
    (ip(), 3000u16..4000, abs_path()).prop_map(|(ip, port, token)| Admin {
        listen: SocketAddr::new(ip, port),
        // Non-loopback admin listeners require a token file.
        token_file: (!ip.is_loopback()).then_some(token),
        allowed_hosts: vec!["localhost".into(), "edge-admin.internal:9901".into()],
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    (1u64..=64 * 1024 * 1024, 1u32..=1000, 1u64..=300_000)
        .prop_map(|(a, b, c)| Limits {
            max_body_bytes: a,
            max_batch_events: b,
            request_body_timeout_ms: c,
            ..Limits::default()
        })
        .prop_flat_map(|l| {
            (1024u64..=1024 * 1024, 256u64..=1024 * 1024).prop_map(move |(head, uri)| Limits {
                max_request_head_bytes: head,
                max_uri_bytes: uri,
                ..l.clone()
            })
        })
}

fn tls(needed: bool) -> impl Strategy<Value = Tls> {
    let min = usize::from(needed);
    (
        proptest::collection::vec(
            (abs_path(), abs_path()).prop_map(|(cert_file, key_file)| CertificateFiles {
                cert_file,
                key_file,
            }),
            min..3,
        ),
        prop_oneof![Just(TlsVersion::V1_2), Just(TlsVersion::V1_3)],
    )
        .prop_map(|(certificates, min_version)| Tls {
            certificates,
            min_version,
        })
}

fn sites() -> impl Strategy<Value = Vec<Site>> {
    proptest::collection::vec(
        (
            "[a-z0-9_-]{1,20}",
            proptest::collection::vec(("[a-z][a-z0-9-]{0,10}[a-z0-9]", any::<bool>()), 1..4),
            proptest::collection::vec(("[a-z][a-z0-9]{0,10}", proptest::option::of(1u16..)), 0..3),
        ),
        1..4,
    )
    .prop_map(|sites| {
        sites
            .into_iter()
            .enumerate()
            .map(|(i, (id, domains, origins))| Site {
                // Suffixes keep ids and domains unique across sites.
                id: format!("{id}-{i}"),
                domains: domains
                    .into_iter()
                    .enumerate()
                    .map(|(j, (label, wildcard))| {
                        let host = format!("{label}.s{i}d{j}.example");
                        if wildcard { format!("*.{host}") } else { host }
                    })
                    .collect(),
                allowed_origins: origins
                    .into_iter()
                    .map(|(host, port)| match port {
                        Some(port) => format!("https://{host}.example.com:{port}"),
                        None => format!("https://{host}.example.com"),
                    })
                    .collect(),
                rate_limits: SiteRateLimits::default(),
                bot_action: None,
            })
            .collect()
    })
}

fn rate_limit() -> impl Strategy<Value = RateLimit> {
    (
        any::<bool>(),
        prop_oneof![
            Just(0.5),
            Just(1.0),
            Just(12.5),
            Just(100.0),
            Just(20_000.0)
        ],
        1u32..100_000,
        any::<bool>(),
    )
        .prop_map(|(enabled, events_per_second, burst, dry_run)| RateLimit {
            enabled,
            events_per_second,
            burst,
            dry_run,
        })
}

fn shared_limits() -> impl Strategy<Value = SharedLimits> {
    (1u64..50, 50u64..10_000, "[a-z:]{1,20}", 1u32..10_000).prop_map(
        |(timeout_ms, sync_interval_ms, key_prefix, fleet_size)| SharedLimits {
            redis_url: "redis://redis.internal:6379/2".to_owned(),
            timeout_ms,
            sync_interval_ms,
            key_prefix,
            fleet_size,
        },
    )
}

fn rate_limits() -> impl Strategy<Value = RateLimits> {
    (
        32u8..=128,
        1_000u64..10_000_000,
        1u64..3_600,
        rate_limit(),
        rate_limit(),
        rate_limit(),
        proptest::option::of(shared_limits()),
    )
        .prop_map(
            |(
                ipv6_prefix_len,
                max_tracked_keys,
                prune_interval_seconds,
                per_ip,
                per_site,
                per_site_ip,
                shared,
            )| {
                RateLimits {
                    ipv6_prefix_len,
                    max_tracked_keys,
                    prune_interval_seconds,
                    per_ip,
                    per_site,
                    per_site_ip,
                    shared,
                }
            },
        )
}

fn bots() -> impl Strategy<Value = Bots> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(BotAction::Drop),
            Just(BotAction::Tag),
            Just(BotAction::Off)
        ],
        0u32..64,
        64u32..4096,
        proptest::collection::vec(abs_path(), 0..2),
    )
        .prop_map(|(enabled, vendored_lists, action, min, max, files)| Bots {
            enabled,
            vendored_lists,
            user_agent_files: files.clone(),
            datacenter_cidr_files: files.clone(),
            referrer_spam_files: files,
            max_user_agent_bytes: max,
            min_user_agent_bytes: min,
            action,
        })
}

fn client_ip() -> impl Strategy<Value = ClientIp> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just("10.0.0.0/8".to_string()),
                Just("192.0.2.7/32".to_string()),
                Just("2001:db8::/32".to_string()),
            ],
            0..3,
        ),
        prop_oneof![
            Just(ForwardedHeader::XForwardedFor),
            Just(ForwardedHeader::Forwarded)
        ],
        any::<bool>(),
    )
        .prop_map(|(trusted_proxies, header, proxy_protocol)| ClientIp {
            trusted_proxies,
            header,
            proxy_protocol,
        })
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn kafka() -> impl Strategy<Value = Kafka> {
    (
        proptest::collection::vec(("[a-z][a-z0-9.-]{0,12}[a-z0-9]", 1u16..), 1..4),
        "[a-zA-Z0-9._-]{3,40}",
        (100u64..=300_000, 0u32..100),
        compression(),
        proptest::option::of((
            proptest::option::of(abs_path()),
            proptest::option::of((abs_path(), abs_path())),
        )),
        proptest::option::of((
            prop_oneof![
                Just(SaslMechanism::Plain),
                Just(SaslMechanism::ScramSha256),
                Just(SaslMechanism::ScramSha512),
            ],
            "[a-zA-Z0-9_@.-]{1,16}",
            abs_path(),
        )),
        proptest::collection::btree_map("[a-z]{1,8}\\.[a-z.]{1,12}", "[ -~]{0,24}", 0..4),
    )
        .prop_map(
            |(brokers, topic, (delivery_timeout_ms, linger_ms), compression, tls, sasl, props)| {
                Kafka {
                    brokers: brokers
                        .iter()
                        .map(|(h, p)| format!("{h}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    topic,
                    delivery_timeout_ms,
                    linger_ms,
                    compression,
                    tls: tls.map(|(ca_file, client)| KafkaTls {
                        ca_file,
                        cert_file: client.as_ref().map(|c| c.0.clone()),
                        key_file: client.map(|c| c.1),
                    }),
                    sasl: sasl.map(|(mechanism, username, password_file)| KafkaSasl {
                        mechanism,
                        username,
                        password_file,
                    }),
                    properties: props
                        .into_iter()
                        .filter(|(k, _)| !RESERVED_KAFKA_PROPERTIES.contains(&k.as_str()))
                        .collect::<BTreeMap<_, _>>(),
                }
            },
        )
}

fn encryption() -> impl Strategy<Value = Encryption> {
    (
        proptest::collection::btree_set(any::<[u8; 32]>(), 1..4),
        any::<prop::sample::Index>(),
        60u64..=86_400,
        1u64..=(1 << 32),
    )
        .prop_map(|(keys, active, age, events)| {
            let backend_keys: Vec<BackendKey> = keys
                .iter()
                .map(|bytes| {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let id = PublicKey::from_base64(&b64)
                        .map(|k| k.key_id().to_string())
                        .unwrap_or_default();
                    BackendKey {
                        id,
                        public_key: b64,
                    }
                })
                .collect();
            Encryption {
                active_key_id: backend_keys[active.index(backend_keys.len())].id.clone(),
                backend_keys,
                data_key_max_age_seconds: age,
                data_key_max_events: events,
            }
        })
}

fn acme(listeners: &Listeners) -> impl Strategy<Value = Option<Acme>> + use<> {
    let mut kinds = Vec::new();
    if listeners.http.is_some() {
        kinds.push(ChallengeKind::Http01);
    }
    if listeners.https.is_some() {
        kinds.push(ChallengeKind::TlsAlpn01);
    }
    proptest::option::of((
        abs_path(),
        proptest::option::of(abs_path()),
        1u32..100,
        proptest::option::of(1u16..60000),
    ))
    .prop_map(move |a| {
        a.map(|(key, ca, hourly, dns_port)| Acme {
            directory_url: "https://acme.example/directory".into(),
            contact: vec!["mailto:ops@example.com".into()],
            ca_file: ca,
            challenges: kinds.clone(),
            storage_key_file: Some(key),
            storage_key_env: None,
            key_type: AcmeKeyType::EcdsaP384,
            renew_remaining_fraction: 0.25,
            max_orders_per_hour: hourly,
            max_orders_per_name_per_day: 5,
            max_concurrent_orders: 2,
            backoff_initial_seconds: 30,
            backoff_max_seconds: 3600,
            order_timeout_seconds: 60,
            on_demand: None,
            dns_check: dns_port.map(|port| DnsCheck {
                resolver: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))],
            }),
            max_forced_renewals_per_name_per_week: 3,
            shared: None,
        })
    })
}

fn capture() -> impl Strategy<Value = Option<Capture>> {
    proptest::option::of(
        (
            abs_path(),
            prop_oneof![Just(1.0), Just(0.5), Just(0.25), Just(0.001)],
            4_096u64..(1 << 40),
            1u32..=1_000,
            any::<bool>(),
        )
            .prop_map(
                |(file, sample_rate, max_file_bytes, max_files, include_user_agent)| Capture {
                    file,
                    sample_rate,
                    max_file_bytes,
                    max_files,
                    include_user_agent,
                },
            ),
    )
}

fn spool() -> impl Strategy<Value = Spool> {
    (
        proptest::option::of(abs_path()),
        65_536u64..(1 << 44),
        0u64..(1 << 50),
        4_096u64..65_536,
        0u64..=(64 << 20),
        0u64..=100_000,
        1u64..=100_000,
    )
        .prop_map(
            |(dir, max_bytes, min_free_disk_bytes, segment_bytes, prefill, delay, min_appends)| {
                Spool {
                    dir,
                    max_bytes,
                    min_free_disk_bytes,
                    fsync: SpoolFsync::Always,
                    segment_bytes,
                    prefill_bytes: prefill,
                    commit_delay_us: delay,
                    commit_delay_min_appends: min_appends,
                }
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    listeners().prop_flat_map(|listeners| {
        (
            abs_path(),
            Just(listeners.clone()),
            admin(),
            limits(),
            tls(listeners.https.is_some()),
            sites(),
            kafka(),
            encryption(),
            acme(&listeners),
            (rate_limits(), client_ip(), capture(), bots(), spool()),
        )
            .prop_map(
                |(
                    data_dir,
                    listeners,
                    admin,
                    limits,
                    tls,
                    sites,
                    kafka,
                    encryption,
                    acme,
                    (rate_limits, client_ip, capture, bots, spool),
                )| {
                    Config {
                        rate_limits,
                        client_ip,
                        bots,
                        data_dir,
                        listeners,
                        admin,
                        limits,
                        tls,
                        sites,
                        kafka,
                        encryption,
                        acme,
                        tag: Tag::default(),
                        capture,
                        connections: Default::default(),
                        spool,
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_configs_round_trip_through_toml(config in config()) {
        prop_assert_eq!(validate(&config), vec![]);
        let text = toml::to_string(&config).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let direct: Config = toml::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&direct, &config);
        let loaded = parse_str(&text, Path::new("/etc/edge/edge.toml"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
        prop_assert_eq!(&loaded.config, &config);
    }
}
