//! Validation rules of `[rate_limits]`, `[client_ip]` and the per-site
//! rate-limit overrides; each error names its line and key.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use edge_config::ForwardedHeader;

#[test]
fn defaults_limit_per_ip_only() {
    let c = valid(&http_only("")).config;
    assert!(c.rate_limits.per_ip.enabled);
    assert_eq!(c.rate_limits.per_ip.events_per_second, 100.0);
    assert_eq!(c.rate_limits.per_ip.burst, 1_000);
    assert!(!c.rate_limits.per_site.enabled);
    assert!(!c.rate_limits.per_site_ip.enabled);
    assert_eq!(c.rate_limits.ipv6_prefix_len, 64);
    assert!(c.client_ip.trusted_proxies.is_empty());
    assert!(!c.client_ip.proxy_protocol);
}

#[test]
fn scopes_and_site_overrides_parse() {
    let text = http_only(
        "[rate_limits]\nipv6_prefix_len = 56\n\
         [rate_limits.per_ip]\nenabled = false\n\
         [rate_limits.per_site]\nevents_per_second = 0.5\nburst = 3\ndry_run = true\n\
         [[sites]]\nid = \"shop\"\ndomains = [\"shop.example.com\"]\n\
         [sites.rate_limits.per_site_ip]\nevents_per_second = 2\nburst = 4\n\
         [client_ip]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nheader = \"forwarded\"\nproxy_protocol = true\n",
    );
    let c = valid(&text).config;
    assert!(!c.rate_limits.per_ip.enabled);
    assert!(c.rate_limits.per_site.dry_run);
    assert_eq!(c.rate_limits.per_site.events_per_second, 0.5);
    let shop = &c.sites[1].rate_limits;
    assert_eq!(shop.per_site_ip.unwrap().burst, 4);
    assert!(shop.per_site.is_none());
    assert_eq!(c.client_ip.header, ForwardedHeader::Forwarded);
    assert!(c.client_ip.proxy_protocol);
}

#[test]
fn an_enabled_scope_needs_a_rate_and_a_burst() {
    let text = http_only("[rate_limits.per_site]\nburst = 10\n");
    assert_single(
        &text,
        "[rate_limits.per_site]",
        "rate_limits.per_site.events_per_second",
        "0 is out of range, expected 0.001..=10000000 (set enabled = false to turn the scope off)",
    );
    let text = http_only("[rate_limits.per_ip]\nevents_per_second = 5\nburst = 0\n");
    assert_single(
        &text,
        "burst = 0",
        "rate_limits.per_ip.burst",
        "0 is out of range, expected 1..=10000000",
    );
}

#[test]
fn site_override_errors_name_the_site() {
    let text = http_only(
        "[[sites]]\nid = \"shop\"\ndomains = [\"shop.example.com\"]\n\
         [sites.rate_limits.per_site]\nevents_per_second = -1\nburst = 5\n",
    );
    assert_single(
        &text,
        "events_per_second = -1",
        "sites[1].rate_limits.per_site.events_per_second",
        "-1 is out of range, expected 0.001..=10000000 (set enabled = false to turn the scope off)",
    );
}

#[test]
fn ipv6_prefix_is_bounded() {
    let text = http_only("[rate_limits]\nipv6_prefix_len = 8\n");
    assert_single(
        &text,
        "ipv6_prefix_len",
        "rate_limits.ipv6_prefix_len",
        "8 is out of range, expected 32..=128",
    );
}

#[test]
fn trusted_proxies_are_networks() {
    let text =
        http_only("[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.1.2.3/16\", \"proxy\"]\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].key, "client_ip.trusted_proxies[1]");
    assert_eq!(
        errs[0].message,
        "\"10.1.2.3/16\" has host bits set; did you mean 10.1.0.0/16?"
    );
    assert_eq!(errs[1].key, "client_ip.trusted_proxies[2]");
    assert_eq!(errs[0].line, Some(line_of(&text, "trusted_proxies")));
}

#[test]
fn unknown_keys_are_named() {
    let text = http_only("[rate_limits.per_ip]\nevents_per_minute = 5\n");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.message.contains("events_per_minute")),
        "{errs:?}"
    );
}

#[test]
fn bots_defaults_site_action_and_relative_lists() {
    let c = valid(&http_only("")).config;
    assert!(c.bots.enabled && c.bots.vendored_lists);
    assert_eq!(c.bots.action, edge_config::BotAction::Drop);
    let text = http_only(
        "[bots]\naction = \"tag\"\nuser_agent_files = [\"lists/ua.txt\"]\n\
         [[sites]]\nid = \"shop\"\ndomains = [\"shop.example.com\"]\nbot_action = \"off\"\n",
    );
    let c = valid(&text).config;
    assert_eq!(c.bots.action, edge_config::BotAction::Tag);
    assert_eq!(c.sites[1].bot_action, Some(edge_config::BotAction::Off));
    assert_eq!(
        c.bots.user_agent_files[0],
        std::path::Path::new("/etc/edge/lists/ua.txt")
    );
}

#[test]
fn bot_length_limits_are_consistent() {
    let text = http_only("[bots]\nmin_user_agent_bytes = 50\nmax_user_agent_bytes = 20\n");
    assert_single(
        &text,
        "min_user_agent_bytes",
        "bots.min_user_agent_bytes",
        "50 is larger than bots.max_user_agent_bytes (20)",
    );
    let errs = errors(&http_only("[bots]\naction = \"block\"\n"));
    assert!(errs.iter().any(|e| e.message.contains("block")), "{errs:?}");
}

#[test]
fn shared_limits_are_off_by_default_and_parse_with_defaults() {
    assert!(valid(&http_only("")).config.rate_limits.shared.is_none());
    let c = valid(&http_only(
        "[rate_limits.shared]\nredis_url = \"redis://10.0.0.5:6379/1\"\n",
    ))
    .config;
    let shared = c.rate_limits.shared.unwrap();
    assert_eq!(shared.timeout_ms, 25);
    assert_eq!(shared.sync_interval_ms, 100);
    assert_eq!(shared.key_prefix, "edge:ratelimit:site:");
    assert_eq!(shared.fleet_size, 1);
}

#[test]
fn shared_limits_errors_name_the_key_and_hide_the_url() {
    let text = http_only("[rate_limits.shared]\nredis_url = \"http://user:hunter2@cache:6379\"\n");
    assert_single(
        &text,
        "redis_url",
        "rate_limits.shared.redis_url",
        "expected redis://[user:password@]host:port[/db]",
    );
    let text = http_only(
        "[rate_limits.shared]\nredis_url = \"redis://cache:6379\"\ntimeout_ms = 200\nsync_interval_ms = 100\n",
    );
    assert_single(
        &text,
        "timeout_ms",
        "rate_limits.shared.timeout_ms",
        "200 must be shorter than sync_interval_ms (100)",
    );
    let text =
        http_only("[rate_limits.shared]\nredis_url = \"redis://cache:6379\"\nfleet_size = 0\n");
    assert_single(
        &text,
        "fleet_size",
        "rate_limits.shared.fleet_size",
        "0 is out of range, expected 1..=10000",
    );
}
