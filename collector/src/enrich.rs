//! Turning a validated [`IncomingEvent`] plus client context into an anonymous
//! [`EventRecord`].
//!
//! The visitor id is the first 16 bytes of
//! `HMAC-SHA256(key = salt of the event's UTC day,
//!              message = site_id || 0x00 || ip || 0x00 || user_agent)`,
//! where `ip` is the 4-byte form of an IPv4 address (IPv4-mapped IPv6
//! addresses are converted first) and the 16-byte form of an IPv6 address.
//! Because the salt changes every UTC day and is deleted after two days, ids
//! cannot be linked across days, nor reversed to an IP once the salt is gone.
//! The raw IP address and user agent are used only as hash and classifier
//! inputs and are not copied into the record.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use edge_envelope::EventRecord;
use ring::hmac;
use url::Url;

use crate::salt::{SaltError, SaltStore, day_of};
use crate::schema::IncomingEvent;
use crate::{sanitize, useragent};

/// Length of a visitor id in bytes.
pub const VISITOR_ID_LEN: usize = 16;

/// A fresh 128-bit event id, never all zeros (which means "no id"
/// downstream).
///
/// It comes from `rand`'s thread-local CSPRNG (ChaCha12, seeded and
/// periodically reseeded from the operating system), not from a
/// `getrandom` system call per event: an id needs to be unique and
/// unguessable, which that generator gives, and the system call was one
/// of the request path's kernel entries (BENCHMARKS.md, issue 15).
pub fn new_event_id() -> [u8; 16] {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut id = [0u8; 16];
    loop {
        rng.fill(&mut id);
        if id != [0; 16] {
            return id;
        }
    }
}

/// What the proxy knows about the client that sent an event.
///
/// `Debug` redacts the IP address and user agent so the context can't leak
/// them into logs by accident.
#[derive(Clone, Copy)]
pub struct ClientContext<'a> {
    /// Client IP address (after trusted-proxy handling by the caller).
    pub ip: IpAddr,
    /// The `User-Agent` header, empty if absent.
    pub user_agent: &'a str,
    /// Server receive time, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

impl fmt::Debug for ClientContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientContext")
            .field("ip", &"<redacted>")
            .field("user_agent", &"<redacted>")
            .field("received_at_ms", &self.received_at_ms)
            .finish()
    }
}

/// Why an event could not be enriched.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The salt for the event's day is unavailable.
    #[error("visitor salt unavailable: {0}")]
    Salt(#[from] SaltError),
    /// The event's URL is not an absolute URL (only possible for events that
    /// did not come through [`crate::schema`]).
    #[error("event url is not an absolute URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
}

impl EnrichError {
    /// Short fixed label for metrics: `salt` or `invalid_url`.
    pub fn kind(&self) -> &'static str {
        match self {
            EnrichError::Salt(_) => "salt",
            EnrichError::InvalidUrl(_) => "invalid_url",
        }
    }
}

/// One client on one site, with its visitor id derived: see
/// [`Enricher::visitor`]. `Debug` shows neither the client nor the id.
pub struct Visitor<'a> {
    site_id: &'a str,
    ctx: &'a ClientContext<'a>,
    id: [u8; VISITOR_ID_LEN],
    /// The user agent's classes, looked up once for all the events.
    user_agent: useragent::RuleAnswer,
}

impl fmt::Debug for Visitor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Visitor")
            .field("site_id", &self.site_id)
            .finish_non_exhaustive()
    }
}

/// Builds [`EventRecord`]s from incoming events; cheap to share between
/// threads (`Arc<Enricher>`) or to clone (clones share the user-agent memo).
#[derive(Debug, Clone)]
pub struct Enricher {
    salts: Arc<SaltStore>,
    user_agents: Arc<useragent::UserAgentMemo>,
}

impl Enricher {
    /// An enricher deriving visitor ids from `salts`.
    pub fn new(salts: Arc<SaltStore>) -> Self {
        Enricher {
            salts,
            user_agents: Arc::new(useragent::UserAgentMemo::new()),
        }
    }

    /// Sanitises, classifies and pseudonymises one event for `site_id`.
    ///
    /// # Errors
    ///
    /// [`EnrichError::Salt`] if the salt for the day of
    /// `ctx.received_at_ms` cannot be obtained; [`EnrichError::InvalidUrl`]
    /// if `event.url` does not parse.
    pub fn enrich(
        &self,
        site_id: &str,
        event: IncomingEvent,
        ctx: &ClientContext<'_>,
    ) -> Result<EventRecord, EnrichError> {
        let referrer = event.referrer.as_deref().and_then(sanitize::parse_referrer);
        self.enrich_parsed(site_id, event, referrer.as_ref(), ctx)
    }

    /// [`Enricher::enrich`] with the event's referrer already parsed by
    /// [`sanitize::parse_referrer`] (`None` when absent or not a URL), for a
    /// caller that parsed it before (the bot filter's referrer check): the
    /// referrer is not parsed again. Neither is the page URL when the event
    /// carries validation's parse of it ([`IncomingEvent::parsed_url`]).
    ///
    /// # Errors
    ///
    /// As [`Enricher::enrich`].
    pub fn enrich_parsed(
        &self,
        site_id: &str,
        event: IncomingEvent,
        referrer: Option<&Url>,
        ctx: &ClientContext<'_>,
    ) -> Result<EventRecord, EnrichError> {
        let visitor = self.visitor(site_id, ctx)?;
        self.enrich_for(&visitor, event, referrer)
    }

    /// The visitor behind `ctx` on `site_id`, for enriching all the events
    /// of one request with [`Enricher::enrich_for`]: the visitor id (an
    /// HMAC-SHA-256 of site, IP and user agent) is derived, and the user
    /// agent classified, once, not per event of a batch.
    ///
    /// # Errors
    ///
    /// [`EnrichError::Salt`] if the salt for the day of
    /// `ctx.received_at_ms` cannot be obtained.
    pub fn visitor<'a>(
        &self,
        site_id: &'a str,
        ctx: &'a ClientContext<'a>,
    ) -> Result<Visitor<'a>, EnrichError> {
        let id =
            self.visitor_id_for(site_id, ctx.ip, ctx.user_agent, day_of(ctx.received_at_ms))?;
        let user_agent = self.user_agents.rules(ctx.user_agent);
        Ok(Visitor {
            site_id,
            ctx,
            id,
            user_agent,
        })
    }

    /// [`Enricher::enrich_parsed`] for an event of `visitor`.
    ///
    /// # Errors
    ///
    /// [`EnrichError::InvalidUrl`] if the event carries no parsed page URL
    /// and `event.url` does not parse.
    pub fn enrich_for(
        &self,
        visitor: &Visitor<'_>,
        mut event: IncomingEvent,
        referrer: Option<&Url>,
    ) -> Result<EventRecord, EnrichError> {
        // Validation's parse of the page URL when it has one.
        let page = match event.parsed_url.take() {
            Some(page) => page,
            None => Url::parse(&event.url)?,
        };
        let (url, utm) = sanitize::page_url(&page);
        let referrer = referrer.and_then(sanitize::referrer_of);
        let (device, browser, os) = useragent::with_width(visitor.user_agent, event.screen_width);
        Ok(EventRecord {
            site_id: visitor.site_id.to_owned(),
            received_at_ms: visitor.ctx.received_at_ms,
            name: event.name,
            url,
            referrer,
            utm,
            props: event.props,
            visitor_id: visitor.id,
            device,
            browser,
            os,
            event_id: new_event_id(),
        })
    }

    /// The visitor id of (`site_id`, `ip`, `user_agent`) on UTC `day`.
    ///
    /// # Errors
    ///
    /// [`EnrichError::Salt`] if the salt for `day` is unavailable.
    pub fn visitor_id_for(
        &self,
        site_id: &str,
        ip: IpAddr,
        user_agent: &str,
        day: i64,
    ) -> Result<[u8; VISITOR_ID_LEN], EnrichError> {
        // The key is derived once per salt and kept beside it (see
        // `crate::salt` for why that is no more sensitive than the salt).
        let key = self.salts.key_for_day(day)?;
        let mut mac = hmac::Context::with_key(&key);
        mac.update(site_id.as_bytes());
        mac.update(&[0]);
        match ip.to_canonical() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.update(&[0]);
        mac.update(user_agent.as_bytes());
        let tag = mac.sign();
        let mut id = [0u8; VISITOR_ID_LEN];
        id.copy_from_slice(&tag.as_ref()[..VISITOR_ID_LEN]);
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use edge_envelope::{BrowserFamily, DeviceClass, OsFamily, Utm};

    use super::*;
    use crate::salt::current_day;

    const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1";
    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));

    fn enricher() -> Enricher {
        Enricher::new(Arc::new(SaltStore::in_memory()))
    }

    /// The test client (IP, UA) sending at noon today.
    fn client_now() -> ClientContext<'static> {
        ClientContext {
            ip: IP,
            user_agent: UA,
            received_at_ms: now_ms(),
        }
    }

    fn now_ms() -> i64 {
        current_day() * 86_400_000 + 12 * 3_600_000
    }

    #[test]
    fn same_inputs_same_day_give_same_id() {
        let e = enricher();
        let day = current_day();
        assert_eq!(
            e.visitor_id_for("site", IP, UA, day).unwrap(),
            e.visitor_id_for("site", IP, UA, day).unwrap()
        );
        // Via enrich: two events at different times of the same day.
        let ctx = |ms| ClientContext {
            ip: IP,
            user_agent: UA,
            received_at_ms: ms,
        };
        let a = e.enrich("site", event(), &ctx(day * 86_400_000)).unwrap();
        let b = e
            .enrich("site", event(), &ctx(day * 86_400_000 + 86_399_999))
            .unwrap();
        assert_eq!(a.visitor_id, b.visitor_id);
    }

    #[test]
    fn any_changed_input_changes_the_id() {
        let e = enricher();
        let day = current_day();
        let base = e.visitor_id_for("site", IP, UA, day).unwrap();
        let other_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 78));
        assert_ne!(base, e.visitor_id_for("site", IP, UA, day + 1).unwrap());
        assert_ne!(base, e.visitor_id_for("other", IP, UA, day).unwrap());
        assert_ne!(base, e.visitor_id_for("site", other_ip, UA, day).unwrap());
        assert_ne!(
            base,
            e.visitor_id_for("site", IP, "curl/8.5.0", day).unwrap()
        );
    }

    #[test]
    fn separators_prevent_ambiguous_concatenation() {
        let e = enricher();
        let day = current_day();
        // "ab" + ip + "c" must differ from "a" + ip + "bc" style shifts.
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_ne!(
            e.visitor_id_for("site", v6, UA, day).unwrap(),
            e.visitor_id_for("site\0", v6, UA, day).unwrap()
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_same_visitor() {
        let e = enricher();
        let day = current_day();
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 77).to_ipv6_mapped());
        assert_eq!(
            e.visitor_id_for("site", IP, UA, day).unwrap(),
            e.visitor_id_for("site", mapped, UA, day).unwrap()
        );
    }

    #[test]
    fn matches_hmac_definition() {
        let salts = Arc::new(SaltStore::in_memory());
        let e = Enricher::new(Arc::clone(&salts));
        let day = current_day();
        let salt = salts.salt_for_day(day).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salt[..]);
        let mut msg = b"site\0".to_vec();
        msg.extend_from_slice(&[203, 0, 113, 77]);
        msg.push(0);
        msg.extend_from_slice(UA.as_bytes());
        let tag = hmac::sign(&key, &msg);
        assert_eq!(
            e.visitor_id_for("site", IP, UA, day).unwrap()[..],
            tag.as_ref()[..16]
        );
    }

    fn event() -> IncomingEvent {
        IncomingEvent {
            name: "pageview".into(),
            url: "https://user:pw@example.com/pricing?utm_source=news&email=a%40b.c#plans".into(),
            referrer: Some("https://www.google.com/search?q=secret".into()),
            props: vec![("plan".into(), "pro".into())],
            screen_width: Some(390),
            parsed_url: Default::default(),
        }
    }

    /// The events of one request share one derived visitor: each record is
    /// the one `enrich` gives for the same event, apart from its own event id.
    #[test]
    fn events_enriched_for_one_visitor_equal_single_enrichment() {
        let e = enricher();
        let ctx = client_now();
        let visitor = e.visitor("site", &ctx).unwrap();
        let a = e.enrich_for(&visitor, event(), None).unwrap();
        let b = e.enrich_for(&visitor, event(), None).unwrap();
        let mut single = e.enrich("site", event(), &ctx).unwrap();
        single.referrer = None;
        assert_ne!(a.event_id, b.event_id);
        for mut record in [a, b] {
            record.event_id = single.event_id;
            assert_eq!(record, single);
        }
        assert!(!format!("{visitor:?}").contains("203.0.113.77"));
    }

    /// A validated event carries its parsed page URL; enrichment uses it
    /// and, with the referrer parsed by the caller, gives the record it
    /// gives for the same event without them.
    #[test]
    fn validated_and_built_events_enrich_alike() {
        let body = serde_json::json!({
            "name": "pageview",
            "url": event().url,
            "referrer": event().referrer,
            "props": {"plan": "pro"},
            "screen_width": 390,
        });
        let mut validated =
            crate::schema::parse_body(body.to_string().as_bytes(), &Default::default()).unwrap();
        let validated = validated.pop().unwrap();
        assert_eq!(validated, event());
        assert!(validated.clone().parsed_url.take().is_some());
        assert!(event().parsed_url.take().is_none());
        let e = enricher();
        let ctx = client_now();
        let referrer = validated
            .referrer
            .as_deref()
            .and_then(sanitize::parse_referrer);
        let mut a = e
            .enrich_parsed("s", validated, referrer.as_ref(), &ctx)
            .unwrap();
        let mut b = e.enrich("s", event(), &ctx).unwrap();
        (a.event_id, b.event_id) = ([1; 16], [1; 16]);
        assert_eq!(a, b);
        assert_eq!(a.url, "https://example.com/pricing");
        assert_eq!(a.referrer.as_deref(), Some("https://www.google.com/search"));
    }

    #[test]
    fn enrich_builds_an_anonymous_record() {
        let e = enricher();
        let ctx = client_now();
        let record = e.enrich("site-1", event(), &ctx).unwrap();
        assert_eq!(record.site_id, "site-1");
        assert_eq!(record.received_at_ms, ctx.received_at_ms);
        assert_eq!(record.name, "pageview");
        assert_eq!(record.url, "https://example.com/pricing");
        assert_eq!(
            record.referrer.as_deref(),
            Some("https://www.google.com/search")
        );
        assert_eq!(
            record.utm,
            Utm {
                source: Some("news".into()),
                ..Utm::default()
            }
        );
        assert_eq!(record.props, vec![("plan".to_owned(), "pro".to_owned())]);
        assert_eq!(
            (record.device, record.browser, record.os),
            (DeviceClass::Mobile, BrowserFamily::Safari, OsFamily::Ios)
        );
        assert_eq!(
            record.visitor_id,
            e.visitor_id_for("site-1", IP, UA, current_day()).unwrap()
        );
    }

    #[test]
    fn record_contains_neither_ip_nor_user_agent() {
        let e = enricher();
        let v6: IpAddr = "2001:db8::42".parse().unwrap();
        for ip in [IP, v6] {
            let ctx = ClientContext {
                ip,
                user_agent: UA,
                received_at_ms: now_ms(),
            };
            let record = e.enrich("site", event(), &ctx).unwrap();
            let debug = format!("{record:?}");
            assert!(!debug.contains(&ip.to_string()), "{debug}");
            assert!(!debug.contains(UA), "{debug}");
            assert!(!debug.contains("Mozilla"), "{debug}");
            assert!(
                !debug.contains("secret") && !debug.contains("a%40b.c"),
                "{debug}"
            );
            let json = serde_json::to_string(&record).unwrap();
            assert!(
                !json.contains(&ip.to_string()) && !json.contains("Mozilla"),
                "{json}"
            );
        }
    }

    #[test]
    fn context_debug_is_redacted() {
        let ctx = ClientContext {
            ip: IP,
            user_agent: UA,
            received_at_ms: 1,
        };
        let debug = format!("{ctx:?}");
        assert!(
            !debug.contains("203.0.113.77") && !debug.contains("Mozilla"),
            "{debug}"
        );
    }

    #[test]
    fn expired_day_and_bad_url_are_errors() {
        let e = enricher();
        let ctx = ClientContext {
            ip: IP,
            user_agent: UA,
            received_at_ms: now_ms() - 3 * 86_400_000,
        };
        assert_eq!(e.enrich("s", event(), &ctx).unwrap_err().kind(), "salt");
        let ctx = ClientContext {
            received_at_ms: now_ms(),
            ..ctx
        };
        let bad = IncomingEvent {
            url: "not a url".into(),
            ..event()
        };
        assert_eq!(e.enrich("s", bad, &ctx).unwrap_err().kind(), "invalid_url");
    }

    #[test]
    fn every_event_gets_its_own_nonzero_id() {
        let e = enricher();
        let ctx = client_now();
        let ids: std::collections::HashSet<[u8; 16]> = (0..1000)
            .map(|_| e.enrich("s", event(), &ctx).unwrap().event_id)
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&[0; 16]));
    }
}
