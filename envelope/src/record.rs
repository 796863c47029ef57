//! The enriched, anonymous event as it travels inside an envelope.
//!
//! This is the plaintext that gets encrypted: it never contains a client IP
//! address or a user agent string, only derived, coarse values.

use serde::{Deserialize, Serialize};

/// Version of the [`EventRecord`] encoding written by this build (2: with
/// [`EventRecord::event_id`]; version 1 records are still read, with an
/// all-zero id).
pub const RECORD_VERSION: u8 = 2;

/// One analytics event after validation and enrichment at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Site id from the edge configuration (also the Kafka key and AEAD associated data).
    pub site_id: String,
    /// Server receive time, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Event name, `pageview` or a custom event name.
    pub name: String,
    /// Page URL without query string or fragment (`https://host/path`).
    pub url: String,
    /// Referrer URL without query string or fragment, if any.
    pub referrer: Option<String>,
    /// Campaign parameters kept from the page URL's query string.
    pub utm: Utm,
    /// Custom properties, in the order sent, values stringified.
    pub props: Vec<(String, String)>,
    /// Keyed hash of site, client IP and user agent under a daily-rotating salt.
    pub visitor_id: [u8; 16],
    /// Coarse device class derived from the user agent (and screen width, if sent).
    pub device: DeviceClass,
    /// Coarse browser family derived from the user agent.
    pub browser: BrowserFamily,
    /// Coarse operating system family derived from the user agent.
    pub os: OsFamily,
    /// Unique random id given to the event by the edge (128 bits), so a
    /// record delivered twice is counted once. All zeros: no id (a record
    /// of version 1, written before ids existed).
    pub event_id: [u8; 16],
}

/// Campaign (`utm_*`) parameters taken from the page URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    /// `utm_source` (or `ref`/`source`).
    pub source: Option<String>,
    /// `utm_medium`.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`.
    pub term: Option<String>,
    /// `utm_content`.
    pub content: Option<String>,
}

/// Coarse device class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Desktop or laptop.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Automated client that was tagged and forwarded rather than dropped.
    Bot,
    /// Could not tell.
    Unknown,
}

/// Coarse browser family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowserFamily {
    /// Google Chrome and Chromium.
    Chrome,
    /// Mozilla Firefox.
    Firefox,
    /// Apple Safari.
    Safari,
    /// Microsoft Edge.
    Edge,
    /// Opera.
    Opera,
    /// Samsung Internet.
    SamsungInternet,
    /// Anything else.
    Other,
}

/// Coarse operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsFamily {
    /// Microsoft Windows.
    Windows,
    /// Apple macOS.
    MacOs,
    /// Linux desktop.
    Linux,
    /// Android.
    Android,
    /// Apple iOS / iPadOS.
    Ios,
    /// ChromeOS.
    ChromeOs,
    /// Anything else.
    Other,
}
