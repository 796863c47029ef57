//! In-memory roll-up of one batch of decrypted events: per site, per time
//! bucket (minute and hour), counters, the exact set of visitors and
//! dimension counts. The store adds a batch to what is already stored.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use edge_envelope::EventRecord;
use serde::{Deserialize, Serialize};

/// The event name counted as a page view; every other name is a custom event.
pub const PAGEVIEW: &str = "pageview";

/// `lg_config_k` of the visitor sketches: 4096 registers, about 1.6 % standard error.
pub const HLL_LG_K: u8 = 12;

/// Longest dimension value stored (bytes): longer page paths, referrer
/// hosts and event names are cut at a character boundary to this length
/// and end in `…`, so every index row stays far below PostgreSQL's
/// B-tree limit (2,704 bytes per row).
pub const MAX_VALUE_BYTES: usize = 1024;

/// Width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketSize {
    /// 60 seconds.
    Minute,
    /// 3600 seconds.
    Hour,
}

impl BucketSize {
    /// Both sizes, smallest first.
    pub const ALL: [BucketSize; 2] = [BucketSize::Minute, BucketSize::Hour];

    /// Width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            BucketSize::Minute => 60_000,
            BucketSize::Hour => 3_600_000,
        }
    }

    /// Start of the bucket holding `ms` (floor, also for times before 1970).
    pub fn start_of(self, ms: i64) -> i64 {
        ms.div_euclid(self.millis()) * self.millis()
    }

    /// Name stored in the `bucket` column.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketSize::Minute => "minute",
            BucketSize::Hour => "hour",
        }
    }
}

impl std::str::FromStr for BucketSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "minute" => Ok(BucketSize::Minute),
            "hour" => Ok(BucketSize::Hour),
            other => Err(format!("bucket must be minute or hour, got {other:?}")),
        }
    }
}

/// A breakdown counted per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// Page path of a page view.
    Page,
    /// Referrer host of a page view that has a referrer.
    Referrer,
    /// Device class of a page view.
    Device,
    /// Browser family of a page view.
    Browser,
    /// Operating system family of a page view.
    Os,
    /// Name of a custom event (every event that is not a page view).
    Event,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 6] = [
        Dimension::Page,
        Dimension::Referrer,
        Dimension::Device,
        Dimension::Browser,
        Dimension::Os,
        Dimension::Event,
    ];

    /// Name stored in the `dimension` column and used as a JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Page => "pages",
            Dimension::Referrer => "referrers",
            Dimension::Device => "devices",
            Dimension::Browser => "browsers",
            Dimension::Os => "os",
            Dimension::Event => "events",
        }
    }
}

/// Identifies one bucket row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketKey {
    /// Site id.
    pub site: String,
    /// Bucket width.
    pub size: BucketSize,
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
}

/// What one batch adds to one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketDelta {
    /// Page views.
    pub pageviews: u64,
    /// Custom (non-page-view) events.
    pub custom_events: u64,
    /// Distinct visitor ids seen in this batch.
    pub visitors: BTreeSet<[u8; 16]>,
    /// Counts per (dimension, value).
    pub dims: BTreeMap<(Dimension, String), u64>,
}

/// The roll-up of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Deltas per bucket (minute and hour buckets of every event).
    pub buckets: BTreeMap<BucketKey, BucketDelta>,
    /// Events added.
    pub events: u64,
}

impl Rollup {
    /// Adds one event to its minute and hour buckets.
    pub fn add(&mut self, record: &EventRecord) {
        self.events += 1;
        let is_pageview = record.name == PAGEVIEW;
        let mut dims: Vec<(Dimension, String)> = Vec::with_capacity(5);
        if is_pageview {
            dims.push((Dimension::Page, bounded(page_path(&record.url))));
            if let Some(host) = record.referrer.as_deref().and_then(referrer_host) {
                dims.push((Dimension::Referrer, bounded(host)));
            }
            dims.push((Dimension::Device, label(&record.device)));
            dims.push((Dimension::Browser, label(&record.browser)));
            dims.push((Dimension::Os, label(&record.os)));
        } else {
            dims.push((Dimension::Event, bounded(record.name.clone())));
        }
        for size in BucketSize::ALL {
            let key = BucketKey {
                site: record.site_id.clone(),
                size,
                start_ms: size.start_of(record.received_at_ms),
            };
            let delta = self.buckets.entry(key).or_default();
            if is_pageview {
                delta.pageviews += 1;
            } else {
                delta.custom_events += 1;
            }
            delta.visitors.insert(record.visitor_id);
            for d in &dims {
                *delta.dims.entry(d.clone()).or_default() += 1;
            }
        }
    }

    /// True when no event was added.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// `value` cut to at most [`MAX_VALUE_BYTES`] bytes (at a character
/// boundary, ending in `…`), or unchanged when it fits.
pub fn bounded(mut value: String) -> String {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES - '…'.len_utf8();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push('…');
    value
}

/// The path of a page URL (`/` for a bare origin); the URL itself when it does not parse.
pub fn page_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.path().to_string(),
        Err(_) => url.to_string(),
    }
}

/// The host of a referrer URL, lowercased, without a leading `www.`.
pub fn referrer_host(referrer: &str) -> Option<String> {
    let host = url::Url::parse(referrer)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    Some(
        host.strip_prefix("www.")
            .map(str::to_string)
            .unwrap_or(host),
    )
}

/// The snake_case serde name of a class enum (`desktop`, `firefox`, `mac_os`…).
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// Builds a visitor sketch holding `visitors`.
pub fn sketch_of<'a>(visitors: impl IntoIterator<Item = &'a [u8; 16]>) -> HllSketch {
    let mut union = new_union();
    for v in visitors {
        union.update_value(v);
    }
    union.to_sketch(HllType::Hll8)
}

fn new_union() -> HllUnion {
    match HllUnion::new(HLL_LG_K) {
        Ok(u) => u,
        // HLL_LG_K is a constant inside the allowed range [4, 21].
        Err(e) => unreachable!("HLL_LG_K out of range: {e}"),
    }
}

/// Merges serialized sketches (as stored) into one.
#[derive(Default)]
pub struct SketchMerger {
    union: Option<HllUnion>,
}

impl SketchMerger {
    /// Adds a stored sketch (base64 of the DataSketches binary format).
    pub fn add_encoded(&mut self, encoded: &str) -> Result<(), SketchError> {
        let sketch = decode_sketch(encoded)?;
        self.add(&sketch);
        Ok(())
    }

    /// Adds a sketch.
    pub fn add(&mut self, sketch: &HllSketch) {
        self.union.get_or_insert_with(new_union).update(sketch);
    }

    /// The merged sketch (empty when nothing was added).
    pub fn sketch(&self) -> HllSketch {
        match &self.union {
            Some(u) => u.to_sketch(HllType::Hll8),
            None => new_union().to_sketch(HllType::Hll8),
        }
    }

    /// Estimated distinct visitors, rounded.
    pub fn estimate(&self) -> u64 {
        self.union
            .as_ref()
            .map(|u| u.estimate().round().max(0.0) as u64)
            .unwrap_or(0)
    }
}

/// A stored sketch that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    /// Not base64.
    #[error("visitor sketch is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not a DataSketches HLL image.
    #[error("visitor sketch is not an HLL sketch: {0}")]
    Format(String),
}

/// Serializes a sketch for the `visitors_hll` column.
pub fn encode_sketch(sketch: &HllSketch) -> String {
    base64::engine::general_purpose::STANDARD.encode(sketch.serialize())
}

/// Reads a sketch from the `visitors_hll` column.
pub fn decode_sketch(encoded: &str) -> Result<HllSketch, SketchError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    HllSketch::deserialize(&bytes).map_err(|e| SketchError::Format(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use edge_envelope::{BrowserFamily, DeviceClass, OsFamily, Utm};

    pub(crate) fn record(site: &str, ms: i64, name: &str, url: &str, visitor: u8) -> EventRecord {
        EventRecord {
            site_id: site.into(),
            received_at_ms: ms,
            name: name.into(),
            url: url.into(),
            referrer: Some("https://www.News.example/x".into()),
            utm: Utm::default(),
            props: vec![],
            visitor_id: [visitor; 16],
            device: DeviceClass::Mobile,
            browser: BrowserFamily::SamsungInternet,
            os: OsFamily::MacOs,
            event_id: [0; 16],
        }
    }

    #[test]
    fn bucket_starts_floor_also_before_the_epoch() {
        assert_eq!(BucketSize::Minute.start_of(119_999), 60_000);
        assert_eq!(BucketSize::Hour.start_of(3_600_000), 3_600_000);
        assert_eq!(BucketSize::Minute.start_of(-1), -60_000);
    }

    #[test]
    fn batch_counts_per_minute_and_hour() {
        let mut r = Rollup::default();
        r.add(&record("s", 1_000, "pageview", "https://a.test/docs/x", 1));
        r.add(&record("s", 2_000, "pageview", "https://a.test/docs/x", 1));
        r.add(&record("s", 61_000, "signup", "https://a.test/join", 2));
        r.add(&record("t", 61_000, "pageview", "https://t.test/", 3));
        assert_eq!(r.events, 4);
        let m0 = &r.buckets[&BucketKey {
            site: "s".into(),
            size: BucketSize::Minute,
            start_ms: 0,
        }];
        assert_eq!(
            (m0.pageviews, m0.custom_events, m0.visitors.len()),
            (2, 0, 1)
        );
        assert_eq!(m0.dims[&(Dimension::Page, "/docs/x".into())], 2);
        assert_eq!(m0.dims[&(Dimension::Referrer, "news.example".into())], 2);
        assert_eq!(m0.dims[&(Dimension::Device, "mobile".into())], 2);
        assert_eq!(m0.dims[&(Dimension::Browser, "samsung_internet".into())], 2);
        assert_eq!(m0.dims[&(Dimension::Os, "mac_os".into())], 2);
        let h0 = &r.buckets[&BucketKey {
            site: "s".into(),
            size: BucketSize::Hour,
            start_ms: 0,
        }];
        assert_eq!(
            (h0.pageviews, h0.custom_events, h0.visitors.len()),
            (2, 1, 2)
        );
        assert_eq!(h0.dims[&(Dimension::Event, "signup".into())], 1);
        assert!(!h0.dims.contains_key(&(Dimension::Page, "/join".into())));
        assert_eq!(r.buckets.len(), 5); // s: 2 minutes + 1 hour; t: 1 minute + 1 hour
    }

    #[test]
    fn overlong_values_are_cut_at_a_char_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(2000);
        let b = bounded(long);
        assert!(b.len() <= MAX_VALUE_BYTES, "{}", b.len());
        assert!(b.ends_with('…') && b.starts_with("éé"));
        let mut r = Rollup::default();
        let url = format!("https://a.test/{}", "x".repeat(5000));
        r.add(&record("s", 0, "pageview", &url, 1));
        r.add(&record("s", 0, &"n".repeat(5000), &url, 1));
        for delta in r.buckets.values() {
            assert!(delta.dims.keys().all(|(_, v)| v.len() <= MAX_VALUE_BYTES));
        }
    }

    #[test]
    fn page_path_and_referrer_host() {
        assert_eq!(page_path("https://a.test"), "/");
        assert_eq!(page_path("not a url"), "not a url");
        assert_eq!(
            referrer_host("https://WWW.Example.org/a"),
            Some("example.org".into())
        );
        assert_eq!(referrer_host("nonsense"), None);
    }

    #[test]
    fn hll_merge_of_overlapping_buckets_counts_each_visitor_once() {
        let ids: Vec<[u8; 16]> = (0u32..3000)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        // Three buckets: 0..1500, 1000..2500, 2000..3000 → 3000 distinct.
        let a = encode_sketch(&sketch_of(&ids[0..1500]));
        let b = encode_sketch(&sketch_of(&ids[1000..2500]));
        let c = encode_sketch(&sketch_of(&ids[2000..3000]));
        let mut m = SketchMerger::default();
        for s in [&a, &b, &c] {
            m.add_encoded(s).unwrap();
        }
        let est = m.estimate() as f64;
        assert!((est - 3000.0).abs() / 3000.0 < 0.05, "estimate {est}");
        // Small sets are exact (coupon list mode), and merging is idempotent.
        let small = encode_sketch(&sketch_of(&ids[0..10]));
        let mut m = SketchMerger::default();
        m.add_encoded(&small).unwrap();
        m.add_encoded(&small).unwrap();
        assert_eq!(m.estimate(), 10);
        // Round trip of a merged sketch keeps the estimate.
        let again = decode_sketch(&encode_sketch(&m.sketch())).unwrap();
        assert_eq!(again.estimate().round() as u64, 10);
        assert!(decode_sketch("!!").is_err());
        assert_eq!(SketchMerger::default().estimate(), 0);
    }
}
