//! The GCRA script and the degraded path against the Redis at
//! 127.0.0.1:6379 (the machine's shared one; keys under a per-run prefix).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_config::SharedLimits;
use edge_fleetlimit::{FleetSync, SyncOutcome};
use edge_ratelimit::{Check, FleetBucket, Limit};

fn settings(url: &str) -> SharedLimits {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    SharedLimits {
        redis_url: url.to_owned(),
        timeout_ms: 200,
        sync_interval_ms: 1_000,
        key_prefix: format!("edge-fleetlimit-test:{}:{nanos}:", std::process::id()),
        fleet_size: 2,
    }
}

fn bucket(rate: f64, burst: u32) -> Arc<FleetBucket> {
    Arc::new(FleetBucket::new(
        Limit {
            events_per_second: rate,
            burst,
        },
        2,
        Duration::from_secs(1),
    ))
}

/// Spends every token `b` holds; how many.
fn drain(b: &FleetBucket) -> u64 {
    let mut n = 0;
    while b.check(NonZeroU32::MIN) == Check::Allowed {
        n += 1;
    }
    n
}

#[tokio::test]
async fn two_edges_share_one_bucket_of_rate_times_time_plus_burst() {
    let s = settings("redis://127.0.0.1:6379/");
    let (mut edge_a, mut edge_b) = (FleetSync::new(&s).unwrap(), FleetSync::new(&s).unwrap());
    // The same site on two edges: 2 events/s, burst 50.
    let (a, b) = (bucket(2.0, 50), bucket(2.0, 50));
    let site = |x: &Arc<FleetBucket>| vec![("shop".to_owned(), x.clone())];
    let started = Instant::now();
    let mut spent = 0;
    for _ in 0..20 {
        // Demand far above the limit on both edges.
        for _ in 0..100 {
            let _ = a.check(NonZeroU32::MIN);
            let _ = b.check(NonZeroU32::MIN);
        }
        assert_eq!(edge_a.sync(&site(&a)).await, SyncOutcome::Ok);
        assert_eq!(edge_b.sync(&site(&b)).await, SyncOutcome::Ok);
        spent += drain(&a) + drain(&b);
    }
    let ceiling = 50 + (started.elapsed().as_secs_f64() * 2.0).ceil() as u64;
    assert!(spent >= 50, "the burst was granted: {spent}");
    assert!(
        spent <= ceiling,
        "{spent} tokens granted, at most {ceiling}"
    );
    assert!(!a.is_degraded() && !b.is_degraded());
}

#[tokio::test]
async fn an_unreachable_redis_degrades_to_the_local_share() {
    // Nothing listens on port 1.
    let mut sync = FleetSync::new(&settings("redis://127.0.0.1:1/")).unwrap();
    let b = bucket(0.001, 10);
    let outcome = sync.sync(&[("shop".to_owned(), b.clone())]).await;
    assert_eq!(outcome, SyncOutcome::Error);
    assert!(b.is_degraded());
    // The local share: burst 10 / 2 edges.
    assert_eq!(drain(&b), 5);
}
