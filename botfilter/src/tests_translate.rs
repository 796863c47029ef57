//! The regex translations (lookarounds the `regex` crate lacks) and the
//! embedded lists.

use super::*;

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
