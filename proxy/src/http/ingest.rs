//! Validated events → anonymous records → ciphertext → durable spool.
//!
//! The raw client IP and user agent enter here and stop here: only the
//! enriched, encrypted record leaves.

use std::net::IpAddr;

use edge_collector::enrich::{ClientContext, EnrichError};
use edge_collector::schema::IncomingEvent;
use edge_spool::{AppendError, RecordRef};
use url::Url;

use crate::metrics::RequestOutcome;
use crate::metrics::events::{StoreFailure, events_spooled};
use crate::reply::Reply;
use crate::runtime::{Runtime, SiteEntry};
use crate::shipper::SPOOL_RETRY_AFTER_SECONDS;
use crate::state::EdgeState;
use edge_certs::clock::unix_millis;

/// What the request tells about its sender; never forwarded.
pub(crate) struct ClientInfo<'a> {
    /// Client address.
    pub ip: IpAddr,
    /// `User-Agent` header, empty if absent.
    pub user_agent: &'a str,
    /// Set when the events are a bot's and the site tags them.
    pub bot: Option<edge_botfilter::BotReason>,
}

/// Enriches, encrypts and spools `events`, each with its referrer as parsed
/// by [`edge_collector::sanitize::parse_referrer`]; `Ok` only after all are
/// fsync'd in the spool (the shipper delivers them to Kafka later, in order).
pub(crate) async fn ingest(
    state: &EdgeState,
    rt: &Runtime,
    site: &SiteEntry,
    events: Vec<(IncomingEvent, Option<Url>)>,
    client: &ClientInfo<'_>,
) -> Result<(), Reply> {
    let count = events.len() as u64;
    let ctx = ClientContext {
        ip: client.ip,
        user_agent: client.user_agent,
        received_at_ms: unix_millis(),
    };
    let enrich_failed = |e: EnrichError| {
        StoreFailure::Enrich(&e).emit(&site.id, count);
        Reply::text(
            500,
            RequestOutcome::InternalError,
            "internal error while processing the event",
        )
    };
    // One visitor id for every event of the request (same site, IP and agent).
    let visitor = state
        .enricher
        .visitor(&site.id, &ctx)
        .map_err(enrich_failed)?;
    let mut payloads = Vec::with_capacity(events.len());
    for (event, referrer) in events {
        let record = state
            .enricher
            .enrich_for(&visitor, event, referrer.as_ref())
            .map_err(enrich_failed)?;
        let sealed = rt.sealer.seal(&site.id, &record).map_err(|e| {
            StoreFailure::Seal(&e).emit(&site.id, count);
            Reply::text(
                500,
                RequestOutcome::InternalError,
                "internal error while encrypting the event",
            )
        })?;
        payloads.push(sealed);
    }
    let bot = client.bot.map(|r| r.as_str().as_bytes());
    let records: Vec<RecordRef<'_>> = payloads
        .iter()
        .map(|p| RecordRef {
            key: site.id.as_bytes(),
            header: bot,
            payload: p,
        })
        .collect();
    match state.spool.spool.append(&records).await {
        Ok(_) => {
            events_spooled(&site.id, &site.counters, count);
            Ok(())
        }
        Err(e) => {
            StoreFailure::Spool(&e).emit(&site.id, count);
            let reason = match e {
                AppendError::Full(_) => "the edge's spool is full",
                _ => "the edge's spool is not writable",
            };
            Err(Reply::text(
                503,
                RequestOutcome::Unavailable,
                format!("events could not be stored right now ({reason}); retry later"),
            )
            .with_header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(SPOOL_RETRY_AFTER_SECONDS),
            ))
        }
    }
}
