//! Bot filtering for the edge.
//!
//! A [`BotFilter`] is compiled once from list files named by the
//! configuration ([`BotFilterSources`]) and rebuilt on every reload. Its
//! [`BotFilter::check`] looks at one request's user agent, client IP and
//! referrer host and returns the first [`BotReason`] that applies, in this
//! order (cheapest first):
//!
//! 1. [`BotReason::EmptyUa`]: no user agent, or only blanks.
//! 2. [`BotReason::AbsurdUa`]: shorter than `min_user_agent_bytes`, longer
//!    than `max_user_agent_bytes`, a control character, or no letter at all.
//! 3. [`BotReason::Headless`]: a headless-browser or automation marker
//!    ([`HEADLESS_MARKERS`], ASCII case ignored).
//! 4. [`BotReason::UaList`]: a pattern of the user-agent lists matches and
//!    no exception pattern does (see [`useragent`] for the file formats).
//! 5. [`BotReason::DatacenterIp`]: the client IP is in a data-centre range
//!    (see [`datacenter`]).
//! 6. [`BotReason::ReferrerSpam`]: the referrer host or one of its parent
//!    domains is a known referrer spammer (see [`referrer`]).
//!
//! `check` does not allocate. User-agent verdicts are memoised in a bounded
//! cache (real traffic repeats a few thousand browser user agents, and a
//! lookup costs about a tenth of a match), keyed by a 64-bit hash under a
//! random per-filter key: the filter holds no raw user agents or IPs beyond
//! the call. It is `Send + Sync` and meant to live in the reloadable runtime
//! behind an `Arc`; a rebuilt filter starts with an empty memo.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use serde::Serialize;

pub mod datacenter;
mod error;
pub mod referrer;
mod translate;
pub mod useragent;

pub use datacenter::{DatacenterRanges, ListFileStats};
pub use error::LoadError;
pub use referrer::ReferrerSpam;
pub use useragent::{
    MatchStrategy, UaPattern, UserAgentFileStats, UserAgentFormat, UserAgentMatcher,
};

/// Default upper bound on a user agent's length in bytes. Real browser and
/// in-app user agents stay well under 512 bytes.
pub const DEFAULT_MAX_USER_AGENT_BYTES: usize = 1024;
/// Default lower bound on a user agent's length in bytes (`"Mozilla/5.0"`
/// alone is 11).
pub const DEFAULT_MIN_USER_AGENT_BYTES: usize = 10;

/// Markers of headless browsers and browser automation, matched anywhere in
/// the user agent ignoring ASCII case.
pub const HEADLESS_MARKERS: &[&str] = &[
    "HeadlessChrome",
    "PhantomJS",
    "SlimerJS",
    "Puppeteer",
    "Playwright",
    "Selenium",
    "WebDriver",
    "Electron/",
    "HtmlUnit",
    "jsdom/",
    "Nightmare/",
    "Cypress/",
    "Zombie.js",
    "Chrome-Lighthouse",
];

/// The user-agent list files vendored under `botfilter/data/`, relative to
/// that directory.
pub const VENDORED_USER_AGENT_FILES: &[&str] = &[
    "edge-exceptions.txt",
    "crawler-user-agents/crawler-user-agents.json",
    "isbot/patterns.json",
    "counter-robots/robot.txt",
    "counter-robots/machine.txt",
];
/// The referrer-spam list vendored under `botfilter/data/`.
pub const VENDORED_REFERRER_SPAM_FILES: &[&str] = &["matomo-referrer-spam/spammers.txt"];

/// The vendored lists compiled into the binary (`BotFilterSources::embedded`),
/// as (name under `botfilter/data/`, contents). `scripts/refresh-bot-lists`
/// and a rebuild update them.
pub mod embedded {
    /// User-agent lists, in the order of [`super::VENDORED_USER_AGENT_FILES`].
    pub const USER_AGENT_LISTS: &[(&str, &str)] = &[
        (
            "edge-exceptions.txt",
            include_str!("../data/edge-exceptions.txt"),
        ),
        (
            "crawler-user-agents/crawler-user-agents.json",
            include_str!("../data/crawler-user-agents/crawler-user-agents.json"),
        ),
        (
            "isbot/patterns.json",
            include_str!("../data/isbot/patterns.json"),
        ),
        (
            "counter-robots/robot.txt",
            include_str!("../data/counter-robots/robot.txt"),
        ),
        (
            "counter-robots/machine.txt",
            include_str!("../data/counter-robots/machine.txt"),
        ),
    ];
    /// Referrer-spam lists, in the order of [`super::VENDORED_REFERRER_SPAM_FILES`].
    pub const REFERRER_SPAM_LISTS: &[(&str, &str)] = &[(
        "matomo-referrer-spam/spammers.txt",
        include_str!("../data/matomo-referrer-spam/spammers.txt"),
    )];
}

/// Why a request was taken for a bot. The labels of [`BotReason::as_str`]
/// are the values of the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BotReason {
    /// A user-agent list pattern matched.
    UaList,
    /// A headless-browser or automation marker.
    Headless,
    /// No user agent, or only blanks.
    EmptyUa,
    /// Too short, too long, control characters or no letters.
    AbsurdUa,
    /// The client IP is in a data-centre range.
    DatacenterIp,
    /// The referrer host is a known referrer spammer.
    ReferrerSpam,
}

impl BotReason {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [BotReason; 6] = [
        BotReason::UaList,
        BotReason::Headless,
        BotReason::EmptyUa,
        BotReason::AbsurdUa,
        BotReason::DatacenterIp,
        BotReason::ReferrerSpam,
    ];

    /// Fixed short label.
    pub fn as_str(self) -> &'static str {
        match self {
            BotReason::UaList => "ua_list",
            BotReason::Headless => "headless",
            BotReason::EmptyUa => "empty_ua",
            BotReason::AbsurdUa => "absurd_ua",
            BotReason::DatacenterIp => "datacenter_ip",
            BotReason::ReferrerSpam => "referrer_spam",
        }
    }
}

impl std::fmt::Display for BotReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The files and limits a [`BotFilter`] is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotFilterSources {
    /// User-agent pattern files (`.json`: crawler-user-agents or isbot
    /// format; anything else: one regex per line).
    pub user_agent_files: Vec<PathBuf>,
    /// Data-centre CIDR list files.
    pub datacenter_cidr_files: Vec<PathBuf>,
    /// Referrer-spam host files.
    pub referrer_spam_files: Vec<PathBuf>,
    /// A user agent longer than this many bytes is absurd.
    pub max_user_agent_bytes: usize,
    /// A user agent shorter than this many bytes is absurd.
    pub min_user_agent_bytes: usize,
    /// Also use the vendored lists compiled into the binary ([`embedded`]),
    /// before the files.
    pub include_embedded: bool,
}

impl Default for BotFilterSources {
    /// No files, default length limits.
    fn default() -> Self {
        BotFilterSources {
            include_embedded: false,
            user_agent_files: Vec::new(),
            datacenter_cidr_files: Vec::new(),
            referrer_spam_files: Vec::new(),
            max_user_agent_bytes: DEFAULT_MAX_USER_AGENT_BYTES,
            min_user_agent_bytes: DEFAULT_MIN_USER_AGENT_BYTES,
        }
    }
}

impl BotFilterSources {
    /// The vendored user-agent and referrer-spam lists under `data_dir` (a
    /// copy of `botfilter/data/`), no data-centre ranges, default limits.
    pub fn vendored(data_dir: &Path) -> Self {
        BotFilterSources {
            user_agent_files: VENDORED_USER_AGENT_FILES
                .iter()
                .map(|f| data_dir.join(f))
                .collect(),
            referrer_spam_files: VENDORED_REFERRER_SPAM_FILES
                .iter()
                .map(|f| data_dir.join(f))
                .collect(),
            ..BotFilterSources::default()
        }
    }

    /// The vendored user-agent and referrer-spam lists compiled into the
    /// binary, no files, default limits.
    pub fn embedded() -> Self {
        BotFilterSources {
            include_embedded: true,
            ..BotFilterSources::default()
        }
    }
}

/// What a [`BotFilter`] was built from, for the admin endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct BotFilterStats {
    /// Per user-agent file: format, pattern counts, translated and dropped
    /// look-around patterns.
    pub user_agent_files: Vec<UserAgentFileStats>,
    /// User-agent patterns in use.
    pub user_agent_patterns: usize,
    /// Exception patterns (`!` lines).
    pub exception_patterns: usize,
    /// Of those, matched by Aho-Corasick as plain literals.
    pub literal_patterns: usize,
    /// Of those, in the regex set.
    pub regex_patterns: usize,
    /// The user-agent match strategy.
    pub strategy: MatchStrategy,
    /// Headless markers.
    pub headless_markers: usize,
    /// Per data-centre file: entries read.
    pub datacenter_files: Vec<ListFileStats>,
    /// IPv4 prefixes (listed and exceptions).
    pub datacenter_ipv4_prefixes: usize,
    /// IPv6 prefixes (listed and exceptions).
    pub datacenter_ipv6_prefixes: usize,
    /// Per referrer-spam file: entries read.
    pub referrer_spam_files: Vec<ListFileStats>,
    /// Distinct referrer-spam host names.
    pub referrer_spam_hosts: usize,
    /// User agents longer than this are absurd.
    pub max_user_agent_bytes: usize,
    /// User agents shorter than this are absurd.
    pub min_user_agent_bytes: usize,
    /// Wall time of [`BotFilter::load`], in milliseconds.
    pub build_time_ms: f64,
}

/// The compiled bot filter. Cheap to share (`Send + Sync`), immutable.
#[derive(Debug, Clone)]
pub struct BotFilter {
    patterns: Vec<UaPattern>,
    user_agents: UserAgentMatcher,
    exceptions: UserAgentMatcher,
    headless: AhoCorasick,
    datacenter: DatacenterRanges,
    referrer_spam: ReferrerSpam,
    max_user_agent_bytes: usize,
    min_user_agent_bytes: usize,
    stats: BotFilterStats,
    ua_memo: Arc<UserAgentMemo>,
}

/// Most user-agent verdicts remembered at once (a few hundred kilobytes).
pub const USER_AGENT_MEMO_CAPACITY: usize = 16_384;

/// Bounded memo of user-agent verdicts. Keys are a keyed hash of the user
/// agent (SipHash under a random key), never the text.
#[derive(Debug)]
struct UserAgentMemo {
    key: std::hash::RandomState,
    verdicts: quick_cache::sync::Cache<u64, Option<BotReason>>,
}

impl UserAgentMemo {
    fn new() -> Self {
        Self {
            key: std::hash::RandomState::new(),
            verdicts: quick_cache::sync::Cache::new(USER_AGENT_MEMO_CAPACITY),
        }
    }

    fn key_of(&self, user_agent: &str) -> u64 {
        self.key.hash_one(user_agent)
    }
}

impl BotFilter {
    /// Reads and compiles every file. Errors name the file and line.
    pub fn load(sources: &BotFilterSources) -> Result<BotFilter, LoadError> {
        Self::load_with_strategy(sources, MatchStrategy::default())
    }

    /// [`BotFilter::load`] with an explicit user-agent match strategy (for
    /// benchmarks).
    pub fn load_with_strategy(
        sources: &BotFilterSources,
        strategy: MatchStrategy,
    ) -> Result<BotFilter, LoadError> {
        let started = Instant::now();
        let mut patterns = Vec::new();
        let mut ua_stats = Vec::with_capacity(sources.user_agent_files.len());
        if sources.include_embedded {
            for (name, text) in embedded::USER_AGENT_LISTS {
                let label = PathBuf::from(format!("<embedded>/{name}"));
                let (p, s) = useragent::parse_user_agent_text(ua_stats.len(), &label, text)?;
                patterns.extend(p);
                ua_stats.push(s);
            }
        }
        for path in &sources.user_agent_files {
            let (p, s) = useragent::read_user_agent_file(ua_stats.len(), path)?;
            patterns.extend(p);
            ua_stats.push(s);
        }
        let (exception_patterns, patterns): (Vec<UaPattern>, Vec<UaPattern>) =
            patterns.into_iter().partition(|p| p.exception);
        let user_agents = UserAgentMatcher::build(&patterns, strategy)?;
        let exceptions = UserAgentMatcher::build(&exception_patterns, strategy)?;
        let headless = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(HEADLESS_MARKERS)
            .map_err(|e| LoadError::Compile {
                message: e.to_string(),
            })?;
        let (datacenter, dc_stats) = DatacenterRanges::load(&sources.datacenter_cidr_files)?;
        let (mut referrer_spam, mut spam_stats) = ReferrerSpam::load(&sources.referrer_spam_files)?;
        if sources.include_embedded {
            for (name, text) in embedded::REFERRER_SPAM_LISTS {
                let label = PathBuf::from(format!("<embedded>/{name}"));
                spam_stats.push(referrer_spam.add_text(&label, text)?);
            }
        }
        let (v4, v6) = datacenter.len();
        let stats = BotFilterStats {
            user_agent_files: ua_stats,
            user_agent_patterns: patterns.len(),
            exception_patterns: exception_patterns.len(),
            literal_patterns: user_agents.literal_count(),
            regex_patterns: user_agents.regex_count(),
            strategy,
            headless_markers: HEADLESS_MARKERS.len(),
            datacenter_files: dc_stats,
            datacenter_ipv4_prefixes: v4,
            datacenter_ipv6_prefixes: v6,
            referrer_spam_files: spam_stats,
            referrer_spam_hosts: referrer_spam.len(),
            max_user_agent_bytes: sources.max_user_agent_bytes,
            min_user_agent_bytes: sources.min_user_agent_bytes,
            build_time_ms: duration_ms(started.elapsed()),
        };
        Ok(BotFilter {
            patterns,
            user_agents,
            exceptions,
            headless,
            datacenter,
            referrer_spam,
            max_user_agent_bytes: sources.max_user_agent_bytes,
            min_user_agent_bytes: sources.min_user_agent_bytes,
            stats,
            ua_memo: Arc::new(UserAgentMemo::new()),
        })
    }

    /// The first reason, in the order of the module docs, for taking this
    /// request for a bot; `None` for a plausible human. `referrer_host` is
    /// the host of the `Referer` header, if any. Does not allocate.
    pub fn check(
        &self,
        user_agent: Option<&str>,
        client_ip: IpAddr,
        referrer_host: Option<&str>,
    ) -> Option<BotReason> {
        if let Some(reason) = self.check_user_agent(user_agent) {
            return Some(reason);
        }
        if self.datacenter.contains(client_ip) {
            return Some(BotReason::DatacenterIp);
        }
        if referrer_host.is_some_and(|h| self.referrer_spam.find(h).is_some()) {
            return Some(BotReason::ReferrerSpam);
        }
        None
    }

    /// The user-agent part of [`BotFilter::check`] alone (memoised).
    pub fn check_user_agent(&self, user_agent: Option<&str>) -> Option<BotReason> {
        let ua = user_agent.unwrap_or("");
        if ua.len() > self.max_user_agent_bytes {
            // Never memoised: such a user agent is judged absurd (or empty)
            // without a pattern match, and hashing it would cost more.
            return self.check_user_agent_unmemoised(ua);
        }
        let key = self.ua_memo.key_of(ua);
        if let Some(verdict) = self.ua_memo.verdicts.get(&key) {
            return verdict;
        }
        let verdict = self.check_user_agent_unmemoised(ua);
        self.ua_memo.verdicts.insert(key, verdict);
        verdict
    }

    /// User-agent verdicts currently memoised (at most
    /// [`USER_AGENT_MEMO_CAPACITY`]).
    pub fn memoised_user_agents(&self) -> usize {
        self.ua_memo.verdicts.len()
    }

    /// The user-agent verdict, computed without the memo (for benchmarks
    /// and diagnostics; requests go through [`BotFilter::check_user_agent`]).
    pub fn check_user_agent_unmemoised(&self, ua: &str) -> Option<BotReason> {
        if ua.trim().is_empty() {
            return Some(BotReason::EmptyUa);
        }
        if self.is_absurd(ua) {
            return Some(BotReason::AbsurdUa);
        }
        if self.headless.is_match(ua) {
            return Some(BotReason::Headless);
        }
        if self.user_agents.is_match(ua.as_bytes()) && !self.exceptions.is_match(ua.as_bytes()) {
            return Some(BotReason::UaList);
        }
        None
    }

    fn is_absurd(&self, ua: &str) -> bool {
        ua.len() < self.min_user_agent_bytes
            || ua.len() > self.max_user_agent_bytes
            || ua.bytes().any(|b| b < 0x20 || b == 0x7f)
            || !ua.chars().any(char::is_alphabetic)
    }

    /// The user-agent list patterns that match `user_agent`, exceptions not
    /// applied (for diagnosing a false positive; allocates).
    pub fn matching_patterns(&self, user_agent: &str) -> Vec<&UaPattern> {
        self.user_agents
            .matching_patterns(user_agent.as_bytes())
            .into_iter()
            .filter_map(|i| self.patterns.get(i))
            .collect()
    }

    /// The data-centre ranges.
    pub fn datacenter(&self) -> &DatacenterRanges {
        &self.datacenter
    }

    /// The referrer-spam hosts.
    pub fn referrer_spam(&self) -> &ReferrerSpam {
        &self.referrer_spam
    }

    /// What the filter was built from and how long it took.
    pub fn stats(&self) -> &BotFilterStats {
        &self.stats
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
