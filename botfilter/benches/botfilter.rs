//! Bot filter benchmarks: `check` per call on browser and bot user agents,
//! building from the vendored lists, RegexSet vs Aho-Corasick for literals,
//! and the IP / referrer lookups.
//!
//! ```sh
//! cargo bench -p edge-botfilter --bench botfilter
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edge_botfilter::{BotFilter, BotFilterSources, MatchStrategy};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn browsers() -> Vec<&'static str> {
    include_str!("../testdata/browsers.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Every 10th example user agent of crawler-user-agents (about 210).
fn bots() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        instances: Vec<String>,
    }
    let text =
        std::fs::read_to_string(data_dir().join("crawler-user-agents/crawler-user-agents.json"))
            .unwrap();
    let entries: Vec<Entry> = serde_json::from_str(&text).unwrap();
    entries
        .into_iter()
        .flat_map(|e| e.instances)
        .step_by(10)
        .collect()
}

/// A realistic mix: 9 browser requests for every bot request.
fn mixed(browsers: &[&str], bots: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut b = bots.iter().cycle();
    for i in 0..360 {
        if i % 10 == 9 {
            out.push(b.next().unwrap().clone());
        } else {
            out.push(browsers[i % browsers.len()].to_string());
        }
    }
    out
}

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn bench_check(c: &mut Criterion) {
    let sources = BotFilterSources::vendored(&data_dir());
    let browsers = browsers();
    let bots = bots();
    let mixed = mixed(&browsers, &bots);
    let mut group = c.benchmark_group("botfilter/check");
    for strategy in [MatchStrategy::LiteralsAhoCorasick, MatchStrategy::RegexSet] {
        let filter = BotFilter::load_with_strategy(&sources, strategy).unwrap();
        let s = strategy.as_str();
        group.throughput(Throughput::Elements(browsers.len() as u64));
        // Pattern matching itself (the memo bypassed), then what a request
        // pays for a user agent the filter has seen before.
        group.bench_function(format!("{s}/browsers"), |b| {
            b.iter(|| {
                for ua in &browsers {
                    black_box(filter.check_user_agent_unmemoised(ua));
                }
            })
        });
        group.bench_function(format!("{s}/browsers_memoised"), |b| {
            b.iter(|| {
                for ua in &browsers {
                    black_box(filter.check(Some(ua), HOME, Some("www.google.com")));
                }
            })
        });
        group.throughput(Throughput::Elements(bots.len() as u64));
        group.bench_function(format!("{s}/bots"), |b| {
            b.iter(|| {
                for ua in &bots {
                    black_box(filter.check_user_agent_unmemoised(ua));
                }
            })
        });
        group.throughput(Throughput::Elements(mixed.len() as u64));
        group.bench_function(format!("{s}/mixed_90_10"), |b| {
            b.iter(|| {
                for ua in &mixed {
                    black_box(filter.check_user_agent_unmemoised(ua));
                }
            })
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let sources = BotFilterSources::vendored(&data_dir());
    let mut group = c.benchmark_group("botfilter/build");
    group.sample_size(10);
    for strategy in [MatchStrategy::LiteralsAhoCorasick, MatchStrategy::RegexSet] {
        group.bench_function(strategy.as_str(), |b| {
            b.iter(|| BotFilter::load_with_strategy(black_box(&sources), strategy).unwrap())
        });
    }
    group.finish();
}

/// The cost of the first `check` on a fresh filter: the lazy DFA of the
/// regex set starts empty after every reload.
fn bench_first_check(c: &mut Criterion) {
    let sources = BotFilterSources::vendored(&data_dir());
    let browsers = browsers();
    let bots = bots();
    let mut group = c.benchmark_group("botfilter/cold");
    group.sample_size(10);
    for strategy in [MatchStrategy::LiteralsAhoCorasick, MatchStrategy::RegexSet] {
        group.bench_function(format!("{}/all_browsers_once", strategy.as_str()), |b| {
            b.iter_batched(
                || BotFilter::load_with_strategy(&sources, strategy).unwrap(),
                |filter| {
                    for ua in &browsers {
                        black_box(filter.check(Some(ua), HOME, None));
                    }
                    filter
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("{}/all_bots_once", strategy.as_str()), |b| {
            b.iter_batched(
                || BotFilter::load_with_strategy(&sources, strategy).unwrap(),
                |filter| {
                    for ua in &bots {
                        black_box(filter.check(Some(ua), HOME, None));
                    }
                    filter
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// xorshift, so the generated ranges are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn bench_ip_and_referrer(c: &mut Criterion) {
    // 20,000 IPv4 /20–/24 and 10,000 IPv6 /32–/48 synthetic prefixes (the
    // size of the big cloud providers' lists combined).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.cidr");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..20_000 {
        let len = 20 + (rng.next() % 5) as u8;
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len)
            .unwrap()
            .trunc();
        writeln!(f, "{net}").unwrap();
    }
    for _ in 0..10_000 {
        let len = 32 + (rng.next() % 17) as u8;
        let addr = Ipv6Addr::from(((rng.next() as u128) << 64) | rng.next() as u128);
        let net = ipnet::Ipv6Net::new(addr, len).unwrap().trunc();
        writeln!(f, "{net}").unwrap();
    }
    drop(f);
    let sources = BotFilterSources {
        datacenter_cidr_files: vec![path],
        ..BotFilterSources::vendored(&data_dir())
    };
    let filter = BotFilter::load(&sources).unwrap();
    let ips: Vec<IpAddr> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    ((rng.next() as u128) << 64) | rng.next() as u128,
                ))
            }
        })
        .collect();
    let mut group = c.benchmark_group("botfilter/lookup");
    group.throughput(Throughput::Elements(ips.len() as u64));
    group.bench_function("datacenter_30k_prefixes", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(filter.datacenter().contains(*ip));
            }
        })
    });
    let hosts = [
        "www.google.com",
        "news.ycombinator.com",
        "t.co",
        "l.facebook.com",
        "duckduckgo.com",
        "a.b.c.example.co.uk",
        "www.semalt.com",
        "darodar.com",
    ];
    group.throughput(Throughput::Elements(hosts.len() as u64));
    group.bench_function("referrer_spam", |b| {
        b.iter(|| {
            for h in &hosts {
                black_box(filter.referrer_spam().find(h));
            }
        })
    });
    group.finish();
    group = c.benchmark_group("botfilter/build_with_datacenter");
    group.sample_size(10);
    group.bench_function("vendored_plus_30k_prefixes", |b| {
        b.iter(|| BotFilter::load(black_box(&sources)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_check, bench_build, bench_first_check, bench_ip_and_referrer
}
criterion_main!(benches);
