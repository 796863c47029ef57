//! Memory and CPU cost of the per-IP rate limiter under IPv6 address spraying.
//!
//! `cargo bench -p edge-ratelimit --bench ratelimit_memory [-- KEYS]` (default
//! 10,000,000 distinct /64 prefixes). Each variant runs in its own child
//! process so resident memory is measured from a clean start:
//!
//! * `governor` — one exact GCRA state per key, no cap (what bounded memory
//!   replaces);
//! * `bounded` — the edge's limiter: exact up to `max_tracked_keys`
//!   (1,000,000), then the fixed-memory estimator;
//! * `estimator` — `pingora-limits` count-min sketch alone.
//!
//! For each: RSS growth, bytes per tracked key, ns per check, and how many of
//! 1,000 well-behaved clients (2 events each, far under the limit) the
//! limiter would have refused while the spray was on (false refusals).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_ratelimit::{BoundedKeyed, Check, IpKey, Limit};
use pingora_limits::rate::Rate;

const LIMIT: Limit = Limit {
    events_per_second: 10.0,
    burst: 20,
};
const CAP: usize = 1_000_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A random-looking, distinct /64 per index (splitmix64).
fn sprayed(i: u64) -> IpKey {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let addr = Ipv6Addr::from((u128::from(0x2001_0db8_0000_0000 | (z >> 32)) << 64) | 1);
    IpKey::new(IpAddr::V6(addr), 64)
}

fn legit(i: u64) -> IpKey {
    IpKey::new(
        IpAddr::V6(Ipv6Addr::new(0x2a00, 0x1450, 0, i as u16, 0, 0, 0, 1)),
        64,
    )
}

fn run(variant: &str, keys: u64) {
    let one = NonZeroU32::MIN;
    let before = rss_bytes();
    let started = Instant::now();
    let mut false_refusals = 0u32;
    let grown: u64;
    let tracked = match variant {
        "governor" | "bounded" => {
            let cap = if variant == "governor" {
                usize::MAX
            } else {
                CAP
            };
            let limiter: BoundedKeyed<IpKey> = BoundedKeyed::new(LIMIT, cap);
            for i in 0..keys {
                let _ = limiter.check(&sprayed(i), one);
                if i % (keys / 4).max(1) == 0 {
                    for c in 0..1_000 {
                        for _ in 0..2 {
                            if limiter.check(&legit(c), one) != Check::Allowed {
                                false_refusals += 1;
                            }
                        }
                    }
                }
            }
            // Measure before the limiter is dropped at the end of this arm.
            grown = rss_bytes().saturating_sub(before);
            limiter.tracked_keys()
        }
        "estimator" => {
            let rate = Rate::new_with_estimator_config(Duration::from_secs(1), 4, 1 << 16);
            let allowance = (LIMIT.events_per_second + f64::from(LIMIT.burst)) as isize;
            for i in 0..keys {
                let _ = rate.observe(&sprayed(i), 1);
                if i % (keys / 4).max(1) == 0 {
                    for c in 0..1_000 {
                        for _ in 0..2 {
                            if rate.observe(&legit(c), 1) > allowance {
                                false_refusals += 1;
                            }
                        }
                    }
                }
            }
            grown = rss_bytes().saturating_sub(before);
            0
        }
        other => panic!("unknown variant {other}"),
    };
    let elapsed = started.elapsed();
    let per_key = if tracked > 0 {
        format!("{:.0}", grown as f64 / tracked as f64)
    } else {
        "-".into()
    };
    println!(
        "| {variant} | {keys} | {tracked} | {:.1} | {per_key} | {:.0} | {false_refusals} / 8000 |",
        grown as f64 / 1_048_576.0,
        elapsed.as_nanos() as f64 / (keys as f64 + 8_000.0),
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [variant, keys] = args.as_slice() {
        run(variant, keys.parse().unwrap());
        return;
    }
    let keys: u64 = args
        .first()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10_000_000);
    println!(
        "limit {} events/s, burst {}, cap {CAP} keys, {keys} sprayed /64 prefixes\n",
        LIMIT.events_per_second, LIMIT.burst
    );
    println!(
        "| limiter | keys sprayed | keys tracked | RSS growth MiB | bytes/key | ns/check | false refusals |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for variant in ["governor", "bounded", "estimator"] {
        let status = Command::new(std::env::current_exe().unwrap())
            .args([variant, &keys.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "{variant} failed");
    }
}
