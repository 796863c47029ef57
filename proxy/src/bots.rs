//! Bot filtering at the edge: the `[bots]` table compiled into an
//! [`edge_botfilter::BotFilter`], and the per-request verdict.
//!
//! A request is a bot's when its user agent (empty, absurd, headless, or on
//! a vendored or configured list) or its client address (a configured
//! data-centre range) says so; then its events are dropped with the normal
//! success status, or forwarded with an `edge-bot` Kafka header, as the
//! site's action says. Events whose referrer host is on a referrer-spam list
//! are handled the same way, one by one. Raw user agents and addresses are
//! never logged; only the reason is counted.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use edge_botfilter::{BotFilter, BotFilterSources, BotReason, LoadError};
use edge_config::{BotAction, Bots};

use crate::metrics::METRICS;

/// Modification time and size of every list file named by `[bots]`; a
/// reload rebuilds the filter when they change even if the config did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListStamps(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl ListStamps {
    /// Reads the stamps of the files `bots` names (missing files stamp as `None`).
    pub fn read(bots: &Bots) -> ListStamps {
        ListStamps(
            bots.files()
                .map(|p| {
                    let stamp = std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                    (p.clone(), stamp)
                })
                .collect(),
        )
    }
}

/// Compiles `[bots]`; reuses `previous` when neither the table nor the
/// files changed. `Ok(None)` when bot filtering is off.
pub(crate) fn build(
    bots: &Bots,
    stamps: &ListStamps,
    previous: Option<(&Bots, &ListStamps, Option<&Arc<BotFilter>>)>,
) -> Result<Option<Arc<BotFilter>>, LoadError> {
    if !bots.enabled {
        return Ok(None);
    }
    if let Some((prev_bots, prev_stamps, Some(filter))) = previous
        && prev_bots == bots
        && prev_stamps == stamps
    {
        return Ok(Some(filter.clone()));
    }
    let sources = BotFilterSources {
        include_embedded: bots.vendored_lists,
        user_agent_files: bots.user_agent_files.clone(),
        datacenter_cidr_files: bots.datacenter_cidr_files.clone(),
        referrer_spam_files: bots.referrer_spam_files.clone(),
        max_user_agent_bytes: bots.max_user_agent_bytes as usize,
        min_user_agent_bytes: bots.min_user_agent_bytes as usize,
    };
    let filter = BotFilter::load(&sources)?;
    tracing::info!(
        user_agent_patterns = filter.stats().user_agent_patterns,
        datacenter_prefixes =
            filter.stats().datacenter_ipv4_prefixes + filter.stats().datacenter_ipv6_prefixes,
        referrer_spam_hosts = filter.stats().referrer_spam_hosts,
        build_ms = filter.stats().build_time_ms,
        "bot filter compiled"
    );
    Ok(Some(Arc::new(filter)))
}

/// A bot verdict and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Why.
    pub reason: BotReason,
    /// Drop or tag (never `Off`).
    pub action: BotAction,
}

/// Judges a request by its user agent and client address.
pub(crate) fn judge_request(
    filter: Option<&BotFilter>,
    action: BotAction,
    user_agent: Option<&str>,
    client: IpAddr,
) -> Option<Verdict> {
    let filter = filter.filter(|_| action != BotAction::Off)?;
    let reason = filter.check(user_agent, client, None)?;
    Some(counted(reason, action, 1))
}

/// Whether an event's referrer host is referrer spam. `referrer` is the
/// event's referrer as parsed once by
/// [`edge_collector::sanitize::parse_referrer`] (enrichment reuses it).
pub(crate) fn judge_referrer(
    filter: Option<&BotFilter>,
    action: BotAction,
    referrer: Option<&url::Url>,
) -> Option<Verdict> {
    let filter = filter.filter(|_| action != BotAction::Off)?;
    filter.referrer_spam().find(referrer?.host_str()?)?;
    Some(counted(BotReason::ReferrerSpam, action, 1))
}

fn counted(reason: BotReason, action: BotAction, n: u64) -> Verdict {
    METRICS
        .abuse
        .bot_verdicts
        .with_label_values(&[reason.as_str(), action_label(action)])
        .inc_by(n);
    Verdict { reason, action }
}

fn action_label(action: BotAction) -> &'static str {
    match action {
        BotAction::Drop => "dropped",
        BotAction::Tag => "tagged",
        BotAction::Off => "off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Arc<BotFilter> {
        build(&Bots::default(), &ListStamps::default(), None)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn verdicts_by_user_agent_and_referrer() {
        let f = filter();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(
            judge_request(Some(&f), BotAction::Drop, Some(firefox), ip),
            None
        );
        let v = judge_request(Some(&f), BotAction::Tag, Some("curl/8.5.0"), ip).unwrap();
        assert_eq!((v.reason, v.action), (BotReason::UaList, BotAction::Tag));
        assert_eq!(
            judge_request(Some(&f), BotAction::Drop, None, ip)
                .unwrap()
                .reason,
            BotReason::EmptyUa
        );
        assert_eq!(
            judge_request(Some(&f), BotAction::Off, Some("curl/8.5.0"), ip),
            None
        );
        let spam = f.referrer_spam();
        assert!(!spam.is_empty());
        let parsed = |raw| edge_collector::sanitize::parse_referrer(raw);
        assert_eq!(
            judge_referrer(
                Some(&f),
                BotAction::Drop,
                parsed("https://example.com/").as_ref()
            ),
            None
        );
    }

    #[test]
    fn unchanged_config_and_files_reuse_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("extra.txt");
        std::fs::write(&list, "MyCrawler\n").unwrap();
        let bots = Bots {
            user_agent_files: vec![list.clone()],
            ..Bots::default()
        };
        let stamps = ListStamps::read(&bots);
        let first = build(&bots, &stamps, None).unwrap().unwrap();
        let again = build(
            &bots,
            &ListStamps::read(&bots),
            Some((&bots, &stamps, Some(&first))),
        )
        .unwrap()
        .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        std::fs::write(&list, "MyCrawler\nOtherCrawler/\n").unwrap();
        let changed = ListStamps::read(&bots);
        assert_ne!(changed, stamps);
        let rebuilt = build(&bots, &changed, Some((&bots, &stamps, Some(&first))))
            .unwrap()
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        // A broken list is an error naming file and line, not a silent pass.
        std::fs::write(&list, "(unclosed\n").unwrap();
        let err = build(&bots, &ListStamps::read(&bots), None).unwrap_err();
        assert!(err.to_string().contains("extra.txt:1"), "{err}");
        assert!(
            build(
                &Bots {
                    enabled: false,
                    ..Bots::default()
                },
                &stamps,
                None
            )
            .unwrap()
            .is_none()
        );
    }
}
