//! Compact, versioned plaintext encoding of an [`EventRecord`].
//!
//! Layout: one version byte ([`RECORD_VERSION`]) followed by the
//! [postcard](https://docs.rs/postcard) encoding of the record. This is the
//! plaintext that [`crate::seal`] encrypts and [`crate::open`] decrypts.
//!
//! Version 2 added `event_id` (16 bytes, last field). Version 1 records
//! (written before it) still decode, with an all-zero `event_id` meaning
//! "no id".

use serde::Deserialize;
use thiserror::Error;

use crate::record::{BrowserFamily, DeviceClass, EventRecord, OsFamily, RECORD_VERSION, Utm};

/// Record version 1: [`EventRecord`] without `event_id`.
const RECORD_VERSION_1: u8 = 1;

/// The fields of a version-1 record, in their postcard order.
#[derive(Deserialize)]
struct EventRecordV1 {
    site_id: String,
    received_at_ms: i64,
    name: String,
    url: String,
    referrer: Option<String>,
    utm: Utm,
    props: Vec<(String, String)>,
    visitor_id: [u8; 16],
    device: DeviceClass,
    browser: BrowserFamily,
    os: OsFamily,
}

impl From<EventRecordV1> for EventRecord {
    fn from(r: EventRecordV1) -> EventRecord {
        EventRecord {
            site_id: r.site_id,
            received_at_ms: r.received_at_ms,
            name: r.name,
            url: r.url,
            referrer: r.referrer,
            utm: r.utm,
            props: r.props,
            visitor_id: r.visitor_id,
            device: r.device,
            browser: r.browser,
            os: r.os,
            event_id: [0; 16],
        }
    }
}

/// Why a byte string could not be decoded into an [`EventRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input was empty, so it has no version byte.
    #[error("record is empty")]
    Empty,
    /// The version byte is not one this build can decode.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// The postcard body is malformed or cut short.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// A complete record was decoded but bytes were left over.
    #[error("{0} trailing bytes after record")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// Short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

/// Encodes a record as `RECORD_VERSION || postcard(record)`.
pub fn encode_record(record: &EventRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.url.len() + record.name.len());
    out.push(RECORD_VERSION);
    // Serializing into a Vec cannot fail: every field type of EventRecord is
    // supported by postcard and the only sink is an infallible Vec extend.
    #[allow(clippy::expect_used)]
    postcard::to_extend(record, out).expect("postcard encoding of EventRecord into a Vec")
}

/// Decodes bytes produced by [`encode_record`].
///
/// Rejects an unknown version byte, a malformed body and trailing bytes.
pub fn decode_record(bytes: &[u8]) -> Result<EventRecord, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match version {
        RECORD_VERSION => take_all::<EventRecord>(body),
        RECORD_VERSION_1 => take_all::<EventRecordV1>(body).map(EventRecord::from),
        other => Err(DecodeError::UnsupportedVersion(other)),
    }
}

fn take_all<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    let (record, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(record)
}

/// Proptest strategies and fixtures shared by the tests of several modules.
#[cfg(test)]
pub(crate) mod testing {
    use proptest::prelude::*;

    use crate::record::{BrowserFamily, DeviceClass, EventRecord, OsFamily, Utm};

    /// A realistic page view.
    pub(crate) fn sample_record() -> EventRecord {
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
            visitor_id: [
                0x3a, 0x91, 0x0c, 0x7e, 0x55, 0x12, 0xfe, 0x08, 0x61, 0xaa, 0x2b, 0x90, 0x04, 0xd3,
                0x7f, 0x1c,
            ],
            device: DeviceClass::Mobile,
            browser: BrowserFamily::Firefox,
            os: OsFamily::Android,
            event_id: [
                0x9e, 0x10, 0x44, 0x02, 0xb7, 0x3c, 0x58, 0xe1, 0x0f, 0x6d, 0x21, 0x7a, 0xc4, 0x88,
                0x35, 0x50,
            ],
        }
    }

    fn device() -> impl Strategy<Value = DeviceClass> {
        prop_oneof![
            Just(DeviceClass::Desktop),
            Just(DeviceClass::Mobile),
            Just(DeviceClass::Tablet),
            Just(DeviceClass::Bot),
            Just(DeviceClass::Unknown),
        ]
    }

    fn browser() -> impl Strategy<Value = BrowserFamily> {
        prop_oneof![
            Just(BrowserFamily::Chrome),
            Just(BrowserFamily::Firefox),
            Just(BrowserFamily::Safari),
            Just(BrowserFamily::Edge),
            Just(BrowserFamily::Opera),
            Just(BrowserFamily::SamsungInternet),
            Just(BrowserFamily::Other),
        ]
    }

    fn os() -> impl Strategy<Value = OsFamily> {
        prop_oneof![
            Just(OsFamily::Windows),
            Just(OsFamily::MacOs),
            Just(OsFamily::Linux),
            Just(OsFamily::Android),
            Just(OsFamily::Ios),
            Just(OsFamily::ChromeOs),
            Just(OsFamily::Other),
        ]
    }

    fn utm() -> impl Strategy<Value = Utm> {
        let s = || proptest::option::of(any::<String>());
        (s(), s(), s(), s(), s()).prop_map(|(source, medium, campaign, term, content)| Utm {
            source,
            medium,
            campaign,
            term,
            content,
        })
    }

    /// Arbitrary records: unicode strings, up to 30 custom properties.
    pub(crate) fn arb_record() -> impl Strategy<Value = EventRecord> {
        (
            (
                any::<String>(),
                any::<i64>(),
                any::<String>(),
                any::<String>(),
                proptest::option::of(any::<String>()),
                utm(),
            ),
            (
                proptest::collection::vec((any::<String>(), any::<String>()), 0..=30),
                any::<[u8; 16]>(),
                device(),
                browser(),
                os(),
                any::<[u8; 16]>(),
            ),
        )
            .prop_map(
                |(
                    (site_id, received_at_ms, name, url, referrer, utm),
                    (props, visitor_id, device, browser, os, event_id),
                )| EventRecord {
                    site_id,
                    received_at_ms,
                    name,
                    url,
                    referrer,
                    utm,
                    props,
                    visitor_id,
                    device,
                    browser,
                    os,
                    event_id,
                },
            )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::testing::{arb_record, sample_record};
    use super::*;

    #[test]
    fn round_trip_sample() {
        let record = sample_record();
        let bytes = encode_record(&record);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode_record(&bytes).unwrap(), record);
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(decode_record(&[]), Err(DecodeError::Empty));
    }

    /// A version-1 record as the edge wrote it before event ids existed:
    /// the same postcard fields without the trailing 16 id bytes.
    #[test]
    fn version_1_records_decode_with_no_event_id() {
        let mut record = sample_record();
        let v2 = encode_record(&record);
        let mut v1 = v2[..v2.len() - 16].to_vec();
        v1[0] = 1;
        record.event_id = [0; 16];
        assert_eq!(decode_record(&v1).unwrap(), record);
        // A v1 body labelled v2 is short by the id: malformed, not misread.
        v1[0] = RECORD_VERSION;
        assert_eq!(decode_record(&v1).unwrap_err().kind(), "malformed");
    }

    #[test]
    fn rejects_unknown_version() {
        let mut bytes = encode_record(&sample_record());
        bytes[0] = 3;
        assert_eq!(
            decode_record(&bytes),
            Err(DecodeError::UnsupportedVersion(3))
        );
        bytes[0] = 0;
        assert_eq!(
            decode_record(&bytes),
            Err(DecodeError::UnsupportedVersion(0))
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode_record(&sample_record());
        bytes.extend_from_slice(&[0, 1, 2]);
        assert_eq!(decode_record(&bytes), Err(DecodeError::TrailingBytes(3)));
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let bytes = encode_record(&sample_record());
        for len in 1..bytes.len() {
            let err = decode_record(&bytes[..len]).unwrap_err();
            assert_eq!(err.kind(), "malformed", "len {len}");
        }
    }

    #[test]
    fn kinds_are_distinct() {
        let kinds = [
            DecodeError::Empty.kind(),
            DecodeError::UnsupportedVersion(9).kind(),
            DecodeError::Malformed(String::new()).kind(),
            DecodeError::TrailingBytes(1).kind(),
        ];
        let unique: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len());
    }

    proptest! {
        #[test]
        fn prop_round_trip(record in arb_record()) {
            let bytes = encode_record(&record);
            prop_assert_eq!(decode_record(&bytes).unwrap(), record);
        }
    }
}
