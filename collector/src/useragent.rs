//! Coarse device, browser and OS classes from the user agent string.
//!
//! Only a handful of classes are derived (see [`DeviceClass`],
//! [`BrowserFamily`], [`OsFamily`]); versions and exact models are dropped.
//! Each dimension is decided by an ordered rule list: the first rule with a
//! token contained in the user agent wins. Order matters because browsers
//! copy each other's tokens (Edge and Opera also say `Chrome/`, Chrome also
//! says `Safari/`, iOS says `like Mac OS X`, Android says `Linux`).
//!
//! Browser rules, in order:
//! 1. `Edg/`, `EdgA/`, `EdgiOS/`, `Edge/` → Edge
//! 2. `OPR/`, `OPT/`, `OPiOS/`, `Opera` → Opera
//! 3. `SamsungBrowser/` → Samsung Internet
//! 4. `YaBrowser/`, `UCBrowser/`, `MSIE `, `Trident/` → Other (Chromium-based
//!    or legacy browsers that would otherwise match a later rule)
//! 5. `CriOS/` → Chrome (Chrome on iOS)
//! 6. `FxiOS/`, `Firefox/` → Firefox
//! 7. `Chrome/`, `Chromium/` → Chrome
//! 8. `Safari/` → Safari (only if nothing above matched)
//! 9. otherwise Other
//!
//! OS rules, in order: `Windows` → Windows; `CrOS` → ChromeOS; `Android` →
//! Android; `iPhone`/`iPad`/`iPod` → iOS; `Macintosh`/`Mac OS X` → macOS;
//! `Linux` → Linux; otherwise Other.
//!
//! Device rules, in order:
//! 1. `iPad`, `; Tablet;`, `Kindle`, `Silk/`, `PlayBook` → Tablet
//! 2. `iPhone`, `iPod`, `Mobile`, `Windows Phone`, `Opera Mini`, `IEMobile` → Mobile
//! 3. OS is Android (Android without `Mobile` is a tablet by convention) → Tablet
//! 4. OS is Windows, macOS, Linux or ChromeOS → Desktop
//! 5. otherwise the UA is ambiguous and the screen width decides:
//!    < 768 → Mobile, 768..1024 → Tablet, ≥ 1024 → Desktop, none → Unknown
//!
//! Known limitation: iPadOS Safari in its default "desktop" mode sends a
//! macOS user agent and is classified as a macOS desktop. Bots are not
//! detected here.
//!
//! [`UserAgentMemo`] remembers the user-agent part of the answer (rules of
//! all three dimensions; the screen width is applied afterwards) for a
//! bounded number of user agents, keyed by a keyed hash of the text: real
//! traffic repeats a few thousand user agents, and a lookup costs far less
//! than the substring rules. The memo holds no user agent text.

use std::hash::BuildHasher;

use edge_envelope::{BrowserFamily, DeviceClass, OsFamily};

/// An ordered rule list: the first entry with any token in the UA wins.
type Rules<T> = [(&'static [&'static str], T)];

/// Browser rules; see the module documentation.
const BROWSER_RULES: &Rules<BrowserFamily> = &[
    (&["Edg/", "EdgA/", "EdgiOS/", "Edge/"], BrowserFamily::Edge),
    (&["OPR/", "OPT/", "OPiOS/", "Opera"], BrowserFamily::Opera),
    (&["SamsungBrowser/"], BrowserFamily::SamsungInternet),
    (
        &["YaBrowser/", "UCBrowser/", "MSIE ", "Trident/"],
        BrowserFamily::Other,
    ),
    (&["CriOS/"], BrowserFamily::Chrome),
    (&["FxiOS/", "Firefox/"], BrowserFamily::Firefox),
    (&["Chrome/", "Chromium/"], BrowserFamily::Chrome),
    (&["Safari/"], BrowserFamily::Safari),
];

/// OS rules; see the module documentation.
const OS_RULES: &Rules<OsFamily> = &[
    (&["Windows"], OsFamily::Windows),
    (&["CrOS"], OsFamily::ChromeOs),
    (&["Android"], OsFamily::Android),
    (&["iPhone", "iPad", "iPod"], OsFamily::Ios),
    (&["Macintosh", "Mac OS X"], OsFamily::MacOs),
    (&["Linux"], OsFamily::Linux),
];

/// Device rules decided by the UA alone; see the module documentation.
const DEVICE_RULES: &Rules<DeviceClass> = &[
    (
        &["iPad", "; Tablet;", "Kindle", "Silk/", "PlayBook"],
        DeviceClass::Tablet,
    ),
    (
        &[
            "iPhone",
            "iPod",
            "Mobile",
            "Windows Phone",
            "Opera Mini",
            "IEMobile",
        ],
        DeviceClass::Mobile,
    ),
];

/// Widths below this are a phone hint (CSS pixels).
const TABLET_MIN_WIDTH: u32 = 768;
/// Widths from this up are a desktop hint (CSS pixels).
const DESKTOP_MIN_WIDTH: u32 = 1024;

/// Classifies a user agent into coarse device, browser and OS classes.
///
/// `screen_width` (the `w` field of the event) is only consulted when the
/// user agent does not reveal the device class.
pub fn classify(
    user_agent: &str,
    screen_width: Option<u32>,
) -> (DeviceClass, BrowserFamily, OsFamily) {
    with_width(by_rules(user_agent), screen_width)
}

/// What the user agent alone says: the device class if a device rule
/// matched, the browser and the OS.
pub(crate) type RuleAnswer = (Option<DeviceClass>, BrowserFamily, OsFamily);

/// Runs the rule lists of all three dimensions over `user_agent`.
fn by_rules(user_agent: &str) -> RuleAnswer {
    let browser = first_match(BROWSER_RULES, user_agent).unwrap_or(BrowserFamily::Other);
    let os = first_match(OS_RULES, user_agent).unwrap_or(OsFamily::Other);
    (first_match(DEVICE_RULES, user_agent), browser, os)
}

/// Completes a [`RuleAnswer`] with device rules 3 to 5.
pub(crate) fn with_width(
    (device, browser, os): RuleAnswer,
    screen_width: Option<u32>,
) -> (DeviceClass, BrowserFamily, OsFamily) {
    let device = device.unwrap_or_else(|| device_from_os_or_width(os, screen_width));
    (device, browser, os)
}

/// Most user agents remembered at once by a [`UserAgentMemo`] (well under a
/// megabyte: a 64-bit key and three one-byte classes each, plus the cache's
/// own overhead).
pub const USER_AGENT_MEMO_CAPACITY: usize = 16_384;

/// User agents longer than this are classified without the memo (real
/// browsers send 100 to 300 bytes).
const MEMO_MAX_USER_AGENT_BYTES: usize = 1024;

/// A bounded memo of [`classify`]'s user-agent rules; see the module
/// documentation. Keys are SipHash under a random per-memo key, never the
/// text. Cheap to share (`Sync`).
#[derive(Debug)]
pub struct UserAgentMemo {
    key: std::hash::RandomState,
    answers: quick_cache::sync::Cache<u64, RuleAnswer>,
}

impl Default for UserAgentMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl UserAgentMemo {
    /// An empty memo holding at most [`USER_AGENT_MEMO_CAPACITY`] answers.
    pub fn new() -> Self {
        UserAgentMemo {
            key: std::hash::RandomState::new(),
            answers: quick_cache::sync::Cache::new(USER_AGENT_MEMO_CAPACITY),
        }
    }

    /// [`classify`], answered from the memo when `user_agent` was seen.
    pub fn classify(
        &self,
        user_agent: &str,
        screen_width: Option<u32>,
    ) -> (DeviceClass, BrowserFamily, OsFamily) {
        with_width(self.rules(user_agent), screen_width)
    }

    /// What the rules say of `user_agent` alone, from the memo when it was
    /// seen: [`with_width`] completes it for each event's screen width.
    pub(crate) fn rules(&self, user_agent: &str) -> RuleAnswer {
        if user_agent.len() > MEMO_MAX_USER_AGENT_BYTES {
            return by_rules(user_agent);
        }
        let key = self.key.hash_one(user_agent);
        match self.answers.get(&key) {
            Some(answer) => answer,
            None => {
                let answer = by_rules(user_agent);
                self.answers.insert(key, answer);
                answer
            }
        }
    }

    /// User agents currently remembered (at most [`USER_AGENT_MEMO_CAPACITY`]).
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether no user agent is remembered.
    pub fn is_empty(&self) -> bool {
        self.answers.len() == 0
    }
}

/// Device rules 3 to 5: the OS, then the screen width for ambiguous agents.
fn device_from_os_or_width(os: OsFamily, screen_width: Option<u32>) -> DeviceClass {
    match os {
        OsFamily::Android => DeviceClass::Tablet,
        OsFamily::Windows | OsFamily::MacOs | OsFamily::Linux | OsFamily::ChromeOs => {
            DeviceClass::Desktop
        }
        OsFamily::Ios | OsFamily::Other => match screen_width {
            Some(w) if w < TABLET_MIN_WIDTH => DeviceClass::Mobile,
            Some(w) if w < DESKTOP_MIN_WIDTH => DeviceClass::Tablet,
            Some(_) => DeviceClass::Desktop,
            None => DeviceClass::Unknown,
        },
    }
}

/// The class of the first rule with a token contained in `user_agent`.
fn first_match<T: Copy>(rules: &Rules<T>, user_agent: &str) -> Option<T> {
    rules
        .iter()
        .find(|(tokens, _)| tokens.iter().any(|token| user_agent.contains(token)))
        .map(|&(_, class)| class)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use BrowserFamily as B;
    use DeviceClass as D;
    use OsFamily as O;

    /// Real-world user agents and their expected classes (no screen width).
    const CASES: &[(&str, DeviceClass, BrowserFamily, OsFamily)] = &[
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            D::Desktop,
            B::Chrome,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
            D::Desktop,
            B::Edge,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            D::Desktop,
            B::Firefox,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
            D::Desktop,
            B::Opera,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
            D::Desktop,
            B::Edge,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            D::Desktop,
            B::Other,
            O::Windows,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
            D::Desktop,
            B::Safari,
            O::MacOs,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            D::Desktop,
            B::Chrome,
            O::MacOs,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
            D::Desktop,
            B::Firefox,
            O::MacOs,
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            D::Desktop,
            B::Chrome,
            O::Linux,
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            D::Desktop,
            B::Firefox,
            O::Linux,
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            D::Desktop,
            B::Chrome,
            O::ChromeOs,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
            D::Mobile,
            B::Safari,
            O::Ios,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
            D::Mobile,
            B::Chrome,
            O::Ios,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
            D::Mobile,
            B::Firefox,
            O::Ios,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/124.2478.71 Mobile/15E148 Safari/605.1.15",
            D::Mobile,
            B::Edge,
            O::Ios,
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            D::Tablet,
            B::Safari,
            O::Ios,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            D::Mobile,
            B::Chrome,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
            D::Mobile,
            B::SamsungInternet,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            D::Tablet,
            B::Chrome,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
            D::Mobile,
            B::Firefox,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
            D::Tablet,
            B::Firefox,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
            D::Mobile,
            B::Edge,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 OPR/81.1.4292.78446",
            D::Mobile,
            B::Opera,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; Android 11; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36",
            D::Mobile,
            B::Chrome,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/537.36 (KHTML, like Gecko) Silk/3.68 like Chrome/39.0.2171.93 Safari/537.36",
            D::Tablet,
            B::Chrome,
            O::Android,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
            D::Desktop,
            B::Other,
            O::Windows,
        ),
        (
            "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
            D::Mobile,
            B::Opera,
            O::Other,
        ),
    ];

    #[test]
    fn real_world_user_agents() {
        for &(ua, device, browser, os) in CASES {
            assert_eq!(classify(ua, None), (device, browser, os), "{ua}");
        }
    }

    #[test]
    fn screen_width_only_decides_ambiguous_agents() {
        let curl = "curl/8.5.0";
        assert_eq!(classify(curl, None), (D::Unknown, B::Other, O::Other));
        assert_eq!(classify(curl, Some(390)).0, D::Mobile);
        assert_eq!(classify(curl, Some(767)).0, D::Mobile);
        assert_eq!(classify(curl, Some(768)).0, D::Tablet);
        assert_eq!(classify(curl, Some(1023)).0, D::Tablet);
        assert_eq!(classify(curl, Some(1024)).0, D::Desktop);
        assert_eq!(classify("", Some(500)), (D::Mobile, B::Other, O::Other));
        // A desktop UA stays desktop even in a narrow window.
        assert_eq!(classify(CASES[0].0, Some(400)).0, D::Desktop);
        // A phone UA stays mobile whatever the width.
        assert_eq!(classify(CASES[12].0, Some(2000)).0, D::Mobile);
    }

    #[test]
    fn rule_order_matters() {
        // Edge also carries Chrome/ and Safari/ tokens; Chrome carries Safari/.
        let edge = CASES[1].0;
        assert!(edge.contains("Chrome/") && edge.contains("Safari/"));
        assert_eq!(classify(edge, None).1, B::Edge);
        // iOS carries "like Mac OS X"; Android carries "Linux".
        assert_eq!(classify(CASES[12].0, None).2, O::Ios);
        assert_eq!(classify(CASES[17].0, None).2, O::Android);
    }

    /// The memo gives `classify`'s answers, first and second time (the
    /// screen width still applies to a remembered user agent), and stays
    /// within its capacity.
    #[test]
    fn memo_answers_like_classify_and_is_bounded() {
        let memo = UserAgentMemo::new();
        let long = format!(
            "Mozilla/5.0 (iPhone) {}",
            "x".repeat(MEMO_MAX_USER_AGENT_BYTES)
        );
        for width in [None, Some(390), Some(800), Some(2000)] {
            for ua in CASES.iter().map(|c| c.0).chain(["curl/8.5.0", "", &long]) {
                assert_eq!(
                    memo.classify(ua, width),
                    classify(ua, width),
                    "{ua} {width:?}"
                );
                assert_eq!(
                    memo.classify(ua, width),
                    classify(ua, width),
                    "{ua} {width:?}"
                );
            }
        }
        let distinct: std::collections::HashSet<&str> = CASES.iter().map(|c| c.0).collect();
        assert_eq!(
            memo.len(),
            distinct.len() + 2,
            "the long user agent is not kept"
        );
        for i in 0..USER_AGENT_MEMO_CAPACITY * 2 {
            memo.classify(&format!("agent/{i}"), None);
        }
        assert!(memo.len() <= USER_AGENT_MEMO_CAPACITY, "{}", memo.len());
    }
}
