//! Cost of sealing (serialise + encrypt) and opening one realistic event.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use edge_envelope::{
    BrowserFamily, DeviceClass, EventRecord, Keyring, Opener, OsFamily, PrivateKey, RotationPolicy,
    Sealer, Utm,
};

fn sample_record() -> EventRecord {
    EventRecord {
        site_id: "example-blog".to_owned(),
        received_at_ms: 1_767_225_600_123,
        name: "pageview".to_owned(),
        url: "https://blog.example.com/posts/privacy-first-analytics".to_owned(),
        referrer: Some("https://news.ycombinator.com/item".to_owned()),
        utm: Utm {
            source: Some("newsletter".to_owned()),
            medium: Some("email".to_owned()),
            campaign: Some("spring-launch".to_owned()),
            term: None,
            content: None,
        },
        props: vec![
            ("author".to_owned(), "Ada Lovelace".to_owned()),
            ("logged_in".to_owned(), "false".to_owned()),
        ],
        visitor_id: [7; 16],
        device: DeviceClass::Desktop,
        browser: BrowserFamily::Chrome,
        os: OsFamily::Windows,
        event_id: [9; 16],
    }
}

#[allow(clippy::unwrap_used)]
fn bench(c: &mut Criterion) {
    let key = PrivateKey::generate();
    // Large event budget: the measured loop never pays for a rotation.
    let policy = RotationPolicy {
        max_events: u64::MAX,
        ..RotationPolicy::default()
    };
    let sealer = Sealer::new(key.public_key(), policy).unwrap();
    let opener = Opener::new(Keyring::from_iter([key]));
    let record = sample_record();
    let site = record.site_id.clone();
    let envelope = sealer.seal(&site, &record).unwrap();

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal", |b| {
        b.iter(|| sealer.seal(black_box(&site), black_box(&record)).unwrap())
    });
    group.bench_function("open", |b| {
        b.iter(|| opener.open(black_box(&site), black_box(&envelope)).unwrap())
    });
    group.bench_function("rotate", |b| b.iter(|| sealer.rotate_now().unwrap()));
    group.finish();
}

/// Criterion's macro generates an undocumented `pub fn`; keep it in here.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
