//! Verdicts from the other sources (data-centre ranges, referrer spam) and
//! the errors of loading operator files.

use super::*;

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
