//! Unit tests of the bot filter. This file: user-agent verdicts (browsers,
//! crawler lists, exceptions, headless markers, memo). `tests_translate.rs`:
//! the regex translations and list compilation. `tests_sources.rs`:
//! data-centre ranges, referrer spam and load errors.

use super::*;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::translate::TRANSLATIONS;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn vendored() -> BotFilter {
    BotFilter::load(&BotFilterSources::vendored(&data_dir())).unwrap()
}

const HOME_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

/// Current user agents of real browsers (testdata/browsers.txt).
fn browsers() -> Vec<&'static str> {
    include_str!("../testdata/browsers.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn browsers_are_not_flagged() {
    let filter = vendored();
    let mut flagged = Vec::new();
    for ua in browsers() {
        if let Some(reason) = filter.check(Some(ua), HOME_IP, Some("www.google.com")) {
            let hits: Vec<_> = filter
                .matching_patterns(ua)
                .iter()
                .map(|p| format!("{}:{} {:?}", p.file, p.line, p.original))
                .collect();
            flagged.push(format!("{reason}: {ua}\n    {hits:?}"));
        }
    }
    assert!(
        flagged.is_empty(),
        "flagged browsers:\n{}",
        flagged.join("\n")
    );
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

#[derive(serde::Deserialize)]
struct CrawlerEntry {
    pattern: String,
    instances: Vec<String>,
}

fn crawler_entries() -> Vec<CrawlerEntry> {
    let text =
        std::fs::read_to_string(data_dir().join("crawler-user-agents/crawler-user-agents.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[path = "tests_sources.rs"]
mod sources;
#[path = "tests_translate.rs"]
mod translate;

#[test]
fn filter_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BotFilter>();
}

#[test]
fn crawler_list_instances_are_flagged() {
    let filter = vendored();
    let mut missed = Vec::new();
    let mut total = 0;
    for entry in crawler_entries() {
        for ua in &entry.instances {
            total += 1;
            if filter.check(Some(ua), HOME_IP, None).is_none() {
                missed.push(format!("{} <- {ua}", entry.pattern));
            }
        }
    }
    assert!(total > 2000, "only {total} instances");
    assert!(
        missed.is_empty(),
        "{} of {total} not flagged:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn empty_user_agents() {
    let filter = vendored();
    for ua in [None, Some(""), Some("   "), Some("\t")] {
        assert_eq!(
            filter.check(ua, HOME_IP, None),
            Some(BotReason::EmptyUa),
            "{ua:?}"
        );
    }
}

#[test]
fn absurd_user_agents() {
    let filter = vendored();
    let long = format!(
        "{} {}",
        browsers()[0],
        "Ext/1.0 ".repeat(DEFAULT_MAX_USER_AGENT_BYTES / 8)
    );
    for ua in [
        "Mozilla",                           // too short
        long.as_str(),                       // too long
        "Mozilla/5.0 (Windows NT 10.0)\x01", // control character
        "Mozilla/5.0 (X11)\n Injected: yes", // newline
        "1234567890 / 5.0 (0; 0; 0)",        // no letters
    ] {
        assert_eq!(
            filter.check(Some(ua), HOME_IP, None),
            Some(BotReason::AbsurdUa),
            "{ua:?}"
        );
    }
    // The limit is configurable.
    let sources = BotFilterSources {
        max_user_agent_bytes: 4096,
        ..BotFilterSources::vendored(&data_dir())
    };
    let lenient = BotFilter::load(&sources).unwrap();
    assert_eq!(lenient.check(Some(&long), HOME_IP, None), None);
    // A non-ASCII letter counts as a letter.
    assert_eq!(filter.check_user_agent(Some("Браузер/1.0 (Ω)")), None);
}

#[test]
fn headless_markers() {
    let filter = vendored();
    for ua in [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Playwright/1.49",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 puppeteer",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) slack/4.41.105 Chrome/130.0.6723.191 Electron/33.2.1 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Cypress/13.16.0 Chrome/118.0.5993.159 Electron/27.3.10 Safari/537.36",
        "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/25.0.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0 Selenium",
    ] {
        assert_eq!(
            filter.check(Some(ua), HOME_IP, None),
            Some(BotReason::Headless),
            "{ua}"
        );
    }
}

#[test]
fn list_user_agents() {
    let filter = vendored();
    for ua in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Go-http-client/1.1",
        "Wget/1.21.4",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible)",
    ] {
        assert_eq!(
            filter.check(Some(ua), HOME_IP, None),
            Some(BotReason::UaList),
            "{ua}"
        );
    }
}

#[test]
fn exceptions_apply_only_to_lists() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_file(
        &dir,
        "bots.txt",
        "# bots\nexamplebot\n(?i)crawler\n!examplebot-friend\n",
    );
    let filter = BotFilter::load(&BotFilterSources {
        user_agent_files: vec![list],
        ..BotFilterSources::default()
    })
    .unwrap();
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 examplebot/1.0")),
        Some(BotReason::UaList)
    );
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 EXAMPLEBOT/1.0")),
        None
    ); // case-sensitive
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 MyCRAWLER/1.0")),
        Some(BotReason::UaList)
    );
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 examplebot-friend/1.0")),
        None
    );
    assert_eq!(
        filter.check_user_agent(Some("HeadlessChrome examplebot-friend/1.0")),
        Some(BotReason::Headless)
    );
    assert_eq!(filter.stats().exception_patterns, 1);
    assert_eq!(filter.stats().user_agent_patterns, 2);
}

#[test]
fn both_strategies_agree() {
    let sources = BotFilterSources::vendored(&data_dir());
    let a = BotFilter::load_with_strategy(&sources, MatchStrategy::RegexSet).unwrap();
    let b = BotFilter::load_with_strategy(&sources, MatchStrategy::LiteralsAhoCorasick).unwrap();
    assert_eq!(a.stats().literal_patterns, 0);
    assert!(b.stats().literal_patterns > 1500);
    let mut uas: Vec<String> = browsers().iter().map(|s| s.to_string()).collect();
    for e in crawler_entries() {
        uas.extend(e.instances);
    }
    // A sample: the RegexSet-only strategy is slow in debug builds.
    for ua in uas.iter().step_by(5) {
        assert_eq!(
            a.check_user_agent(Some(ua)),
            b.check_user_agent(Some(ua)),
            "{ua}"
        );
    }
    for ua in uas.iter().step_by(40) {
        let pa: Vec<_> = a
            .matching_patterns(ua)
            .iter()
            .map(|p| (p.file, p.line))
            .collect();
        let pb: Vec<_> = b
            .matching_patterns(ua)
            .iter()
            .map(|p| (p.file, p.line))
            .collect();
        assert_eq!(pa, pb, "{ua}");
    }
}

#[test]
fn vendored_stats() {
    let filter = vendored();
    let stats = filter.stats();
    let by_name = |suffix: &str| {
        stats
            .user_agent_files
            .iter()
            .find(|f| f.path.ends_with(suffix))
            .unwrap()
            .clone()
    };
    let crawler = by_name("crawler-user-agents.json");
    assert_eq!(crawler.format, UserAgentFormat::JsonObjects);
    assert_eq!(crawler.patterns, 1500);
    assert!(crawler.translated.is_empty() && crawler.dropped.is_empty());
    let isbot = by_name("isbot/patterns.json");
    assert_eq!(isbot.format, UserAgentFormat::JsonStrings);
    assert_eq!(isbot.patterns, 206);
    assert_eq!(
        isbot.translated.len(),
        TRANSLATIONS.len(),
        "{:?}",
        isbot.translated
    );
    assert!(
        isbot.dropped.is_empty(),
        "untranslated: {:?}",
        isbot.dropped
    );
    assert_eq!(by_name("robot.txt").patterns, 327);
    assert_eq!(by_name("machine.txt").patterns, 35);
    assert_eq!(by_name("edge-exceptions.txt").exceptions, 2);
    assert_eq!(stats.user_agent_patterns, 1500 + 206 + 327 + 35);
    assert_eq!(
        stats.literal_patterns + stats.regex_patterns,
        stats.user_agent_patterns
    );
    assert_eq!(stats.referrer_spam_hosts, 2347);
    assert!(stats.build_time_ms > 0.0);
    // Serialises for the admin endpoint.
    let json = serde_json::to_value(stats).unwrap();
    assert_eq!(json["strategy"], "literals_aho_corasick");
}

#[test]
fn reason_labels() {
    let labels: Vec<_> = BotReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "ua_list",
            "headless",
            "empty_ua",
            "absurd_ua",
            "datacenter_ip",
            "referrer_spam"
        ]
    );
}

#[test]
fn memoised_verdicts_equal_fresh_ones_and_the_memo_is_bounded() {
    let filter = vendored();
    let crawlers: Vec<String> = crawler_entries()
        .iter()
        .flat_map(|e| e.instances.iter().cloned())
        .take(200)
        .collect();
    let mut uas: Vec<&str> = browsers();
    uas.extend(crawlers.iter().map(String::as_str));
    uas.extend(["", "   ", "x", "HeadlessChrome/126.0 Safari/537.36"]);
    for ua in &uas {
        let fresh = filter.check_user_agent_unmemoised(ua);
        // First call fills the memo, the second answers from it.
        assert_eq!(filter.check_user_agent(Some(ua)), fresh, "{ua:?}");
        assert_eq!(
            filter.check_user_agent(Some(ua)),
            fresh,
            "{ua:?} (memoised)"
        );
    }
    assert!(filter.memoised_user_agents() > 0);
    // A stream of distinct user agents (an attacker varying them) never
    // grows the memo past its capacity.
    for i in 0..3 * USER_AGENT_MEMO_CAPACITY {
        let ua = format!("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/{i}");
        assert_eq!(filter.check_user_agent(Some(&ua)), None);
    }
    assert!(filter.memoised_user_agents() <= USER_AGENT_MEMO_CAPACITY);
    // A rebuilt filter starts with an empty memo.
    assert_eq!(vendored().memoised_user_agents(), 0);
}
