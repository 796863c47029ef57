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

/// Deterministic pseudo-random strings over the characters the translated
/// patterns care about.
fn fuzz_strings() -> Vec<String> {
    const ALPHABET: &[u8] = b"gogle/chanel pixwvapcubotsamlihtpjvnrse;_.-1()GOBT";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..60_000)
        .map(|_| {
            let len = (next() % 24) as usize;
            (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
                .collect()
        })
        .collect()
}

#[test]
fn translations_match_the_originals() {
    let mut corpus: Vec<String> = browsers().iter().map(|s| s.to_string()).collect();
    for e in crawler_entries() {
        corpus.extend(e.instances);
    }
    corpus.retain(|s| s.is_ascii());
    corpus.extend(
        [
            "",
            "news",
            "gnews",
            "xnews",
            "newssapphire",
            "newssapphir",
            "news sapphire",
            "google",
            "googlewv",
            "googlew",
            "googleapp",
            "googleap",
            "google/google",
            "google/googl",
            "google pixel",
            "google pixe",
            "/google",
            "x/google",
            "google/google",
            " channel/google",
            "channel/google",
            "achannel/google",
            " channel/googlex",
            "googl/google",
            "oogle/google",
            "bot",
            "cubot",
            " cubot",
            " cubot ",
            "xcubot",
            " cubots",
            " cu bot",
            "bots_",
            "robot",
            "scan",
            "camscan",
            "amscan",
            "cam scan",
            "http",
            "libhttp",
            "ibhttp",
            "lib http",
            "java",
            "java;",
            "javax",
            "JAVA;",
            "Google",
            "GOOGLEWV",
            " CUBOT",
            "CAMSCAN",
            "LIBHTTP",
            "mozilla/5.0 (compatible; x-y.z 1.0)",
            "mozilla/5.0 (a-b.c/1.0)",
            "mozilla/5.0 ()",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    corpus.extend(fuzz_strings());
    for (original, translated) in TRANSLATIONS {
        // The JavaScript-only class syntax is not accepted by fancy-regex
        // either; compare with the hyphen escaped, which is what JS means.
        let reference = original.replace(r"[\w\d-.]", r"[\w\d\-.]");
        let fancy = fancy_regex::Regex::new(&format!("(?i){reference}")).unwrap();
        let ours = regex::bytes::RegexBuilder::new(&format!("(?i:{translated})"))
            .unicode(false)
            .build()
            .unwrap();
        let mut hits = 0;
        for s in &corpus {
            let expected = fancy.is_match(s).unwrap();
            hits += usize::from(expected);
            assert_eq!(ours.is_match(s.as_bytes()), expected, "{original} on {s:?}");
        }
        assert!(hits > 0, "{original} never matched the corpus");
    }
}

#[test]
fn datacenter_ranges_longest_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(
        &dir,
        "a.cidr",
        "# provider A\n203.0.113.0/24\n!203.0.113.128/25   # our monitoring\n203.0.113.192/26\n\n2001:db8::/32\n!2001:db8:1::/48\n",
    );
    let b = write_file(&dir, "b.cidr", "198.18.0.1\n2001:db8:1:2::/64 # back in\n");
    let filter = BotFilter::load(&BotFilterSources {
        datacenter_cidr_files: vec![a, b],
        ..BotFilterSources::default()
    })
    .unwrap();
    let ua = Some(browsers()[0]);
    let dc = Some(BotReason::DatacenterIp);
    let check = |ip: &str| filter.check(ua, ip.parse().unwrap(), None);
    assert_eq!(check("203.0.113.1"), dc);
    assert_eq!(check("203.0.113.127"), dc);
    assert_eq!(check("203.0.113.128"), None); // exception /25
    assert_eq!(check("203.0.113.191"), None);
    assert_eq!(check("203.0.113.192"), dc); // longer /26 inside the exception
    assert_eq!(check("203.0.114.1"), None);
    assert_eq!(check("198.18.0.1"), dc); // bare address = /32
    assert_eq!(check("198.18.0.2"), None);
    assert_eq!(check("::ffff:203.0.113.5"), dc); // IPv4-mapped
    assert_eq!(check("2001:db8:ffff::1"), dc);
    assert_eq!(check("2001:db8:1::1"), None); // exception /48
    assert_eq!(check("2001:db8:1:2::1"), dc); // /64 inside the exception
    assert_eq!(check("2001:db9::1"), None);
    let (net, listed) = filter
        .datacenter()
        .longest_match(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1)))
        .unwrap();
    assert_eq!(
        (net.to_string().as_str(), listed),
        ("2001:db8:1:2::/64", true)
    );
    let stats = filter.stats();
    assert_eq!(
        (
            stats.datacenter_ipv4_prefixes,
            stats.datacenter_ipv6_prefixes
        ),
        (4, 3)
    );
    assert_eq!(stats.datacenter_files[0].entries, 5);
}

#[test]
fn vendored_example_cidr_file_loads_empty() {
    let sources = BotFilterSources {
        datacenter_cidr_files: vec![data_dir().join("datacenter/example.cidr")],
        ..BotFilterSources::default()
    };
    let filter = BotFilter::load(&sources).unwrap();
    assert!(filter.datacenter().is_empty());
}

#[test]
fn referrer_spam_matches_host_and_parents() {
    let filter = vendored();
    let ua = Some(browsers()[0]);
    let spam = Some(BotReason::ReferrerSpam);
    let check = |host: Option<&str>| filter.check(ua, HOME_IP, host);
    assert_eq!(check(Some("semalt.com")), spam);
    assert_eq!(check(Some("www.semalt.com")), spam);
    assert_eq!(check(Some("a.b.SEMALT.com.")), spam);
    assert_eq!(check(Some("notsemalt.com")), None);
    assert_eq!(check(Some("semalt.com.example.org")), None);
    assert_eq!(check(Some("com")), None);
    assert_eq!(check(Some("www.google.com")), None);
    assert_eq!(check(Some("")), None);
    assert_eq!(check(None), None);
    assert_eq!(
        filter.referrer_spam().find("x.darodar.com"),
        Some("darodar.com")
    );

    let dir = tempfile::tempdir().unwrap();
    let list = write_file(
        &dir,
        "spam.txt",
        "# own list\nsub.example.net\nBÜCHER.example\n",
    );
    let filter = BotFilter::load(&BotFilterSources {
        referrer_spam_files: vec![list],
        ..BotFilterSources::default()
    })
    .unwrap();
    assert!(filter.referrer_spam().find("x.sub.example.net").is_some());
    assert!(filter.referrer_spam().find("example.net").is_none());
    assert!(
        filter
            .referrer_spam()
            .find("xn--bcher-kva.example")
            .is_some()
    );
}

#[test]
fn a_ua_reason_wins_over_ip_and_referrer() {
    let filter = vendored();
    assert_eq!(
        filter.check(None, HOME_IP, Some("semalt.com")),
        Some(BotReason::EmptyUa)
    );
}

fn load_error(sources: BotFilterSources) -> String {
    BotFilter::load(&sources).unwrap_err().to_string()
}

#[test]
fn load_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();

    let f = write_file(&dir, "ua.txt", "# comment\ngoodbot\nbad(bot\n");
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!(
            "{}:3: invalid user-agent pattern \"bad(bot\"",
            p("ua.txt")
        )),
        "{e}"
    );

    let f = write_file(&dir, "look.txt", "(?<!x)bot\n");
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}:1: ", p("look.txt"))) && e.contains("look-around"),
        "{e}"
    );

    let f = write_file(&dir, "all.txt", "ok\nx?\n");
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}:2: ", p("all.txt"))) && e.contains("every user agent"),
        "{e}"
    );

    let f = write_file(
        &dir,
        "c.json",
        "[\n  {\"pattern\": \"a\"},\n  {\"pattern\": \"\"}\n]\n",
    );
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(e.starts_with(&format!("{}:3: ", p("c.json"))), "{e}");

    let f = write_file(&dir, "broken.json", "[\n  \"a\",\n  \"b\"\n  \"c\"\n]\n");
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}:4:", p("broken.json"))) && e.contains("invalid JSON"),
        "{e}"
    );

    let f = write_file(&dir, "shape.json", "{\"pattern\": \"a\"}\n");
    let e = load_error(BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&p("shape.json")) && e.contains("expected a JSON array"),
        "{e}"
    );

    let f = write_file(&dir, "dc.cidr", "# x\n10.0.0.0/8\n10.0.0.0/33\n");
    let e = load_error(BotFilterSources {
        datacenter_cidr_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!(
            "{}:3: invalid network \"10.0.0.0/33\"",
            p("dc.cidr")
        )),
        "{e}"
    );

    let f = write_file(&dir, "host.cidr", "\n\n192.0.2.1/24\n");
    let e = load_error(BotFilterSources {
        datacenter_cidr_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}:3: ", p("host.cidr"))) && e.contains("192.0.2.0/24"),
        "{e}"
    );

    let f = write_file(&dir, "spam.txt", "ok.example\nbad host.example\n");
    let e = load_error(BotFilterSources {
        referrer_spam_files: vec![f],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}:2: invalid referrer-spam host", p("spam.txt"))),
        "{e}"
    );

    let e = load_error(BotFilterSources {
        user_agent_files: vec![dir.path().join("missing.txt")],
        ..Default::default()
    });
    assert!(
        e.starts_with(&format!("{}: cannot read", p("missing.txt"))),
        "{e}"
    );
}

#[test]
fn json_lookaround_without_translation_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(
        &dir,
        "isbot.json",
        "[\"okbot\", \"(?<!x)weird\", \"(?<!lib)http\"]",
    );
    let filter = BotFilter::load(&BotFilterSources {
        user_agent_files: vec![f],
        ..Default::default()
    })
    .unwrap();
    let stats = &filter.stats().user_agent_files[0];
    assert_eq!(stats.patterns, 2);
    assert_eq!(stats.dropped, ["(?<!x)weird"]);
    assert_eq!(stats.translated, ["(?<!lib)http"]);
    // isbot format is case-insensitive.
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 OKBOT/1")),
        Some(BotReason::UaList)
    );
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 curl-libhttp/1")),
        None
    );
    assert_eq!(
        filter.check_user_agent(Some("Mozilla/5.0 HTTP-client")),
        Some(BotReason::UaList)
    );
}

#[test]
fn embedded_lists_equal_the_vendored_files() {
    let from_files = vendored();
    let embedded = BotFilter::load(&BotFilterSources::embedded()).unwrap();
    let (a, b) = (from_files.stats(), embedded.stats());
    assert_eq!(a.user_agent_patterns, b.user_agent_patterns);
    assert_eq!(a.exception_patterns, b.exception_patterns);
    assert_eq!(a.referrer_spam_hosts, b.referrer_spam_hosts);
    assert!(b.user_agent_patterns > 1_500, "{}", b.user_agent_patterns);
    assert_eq!(
        embedded.check_user_agent(Some("Googlebot/2.1 (+http://www.google.com/bot.html)")),
        Some(BotReason::UaList)
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
