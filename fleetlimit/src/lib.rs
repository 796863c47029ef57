//! Fleet-wide per-site limits through Redis (`[rate_limits.shared]`).
//!
//! Every edge of a fleet holds a few tokens per site ([`FleetBucket`], in
//! `edge-ratelimit`) and spends them on the request path without any I/O.
//! A background task calls [`FleetSync::sync`] every `sync_interval_ms`:
//! one Lua script run asks one GCRA bucket per site in Redis for the tokens
//! each bucket wants, and hands the grants over. The bucket in Redis is the
//! single source of truth, so the fleet together never gets more than
//! `rate × t + burst` tokens, however the load is spread; tokens an edge
//! still holds are the only slack.
//!
//! Every sync is bounded by `timeout_ms` (connect included). A failed or
//! late sync marks every bucket degraded: each edge then enforces its local
//! share (`1 / fleet_size` of the limit) until a sync succeeds again. The
//! connection is a `redis` connection manager, rebuilt after a failure, so
//! the edge reconnects by itself when Redis is back.
//!
//! This crate logs nothing and keeps no metrics: [`FleetSync::sync`] returns
//! a [`SyncOutcome`] for the edge to count.

use std::sync::Arc;
use std::time::Duration;

use edge_config::SharedLimits;
use edge_ratelimit::FleetBucket;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The GCRA script: one bucket per key, all in one round trip.
///
/// `KEYS[i]` is a site's bucket; `ARGV[3i-2..3i]` its rate (events/s),
/// burst and the tokens asked. The stored value is the bucket's theoretical
/// arrival time in microseconds of Redis's own clock (`TIME`), so the
/// edges' clocks do not matter. Returns the tokens granted per key.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local granted = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local asked = tonumber(ARGV[3 * i])
  local period = 1000000 / rate
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local free = math.floor((now + burst * period - tat) / period + 1e-6)
  local grant = math.max(0, math.min(asked, free))
  if grant > 0 then
    tat = tat + grant * period
    redis.call('SET', key, string.format('%.3f', tat),
      'PX', math.ceil((tat - now) / 1000) + 1000)
  end
  granted[i] = grant
end
return granted
";

/// What one sync did, the `outcome` label of
/// `edge_ratelimit_shared_sync_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Redis answered in time: grants handed over, degraded mode left.
    Ok,
    /// Connecting or the script failed: buckets degraded to the local share.
    Error,
    /// No answer within `timeout_ms`: buckets degraded to the local share.
    Timeout,
}

impl SyncOutcome {
    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }

    /// Every outcome (to register the label values at startup).
    pub const ALL: [SyncOutcome; 3] = [Self::Ok, Self::Error, Self::Timeout];
}

/// The settings could not be turned into a Redis client.
#[derive(Debug, thiserror::Error)]
#[error("rate_limits.shared.redis_url: {0}")]
pub struct FleetSyncError(#[source] redis::RedisError);

/// The Redis side of the fleet-wide limits: a lazily connected client and
/// the script.
pub struct FleetSync {
    settings: SharedLimits,
    client: redis::Client,
    connection: Option<ConnectionManager>,
    script: redis::Script,
}

impl FleetSync {
    /// A client for `settings`; connects on the first sync.
    pub fn new(settings: &SharedLimits) -> Result<FleetSync, FleetSyncError> {
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(FleetSyncError)?;
        Ok(FleetSync {
            settings: settings.clone(),
            client,
            connection: None,
            script: redis::Script::new(GCRA_SCRIPT),
        })
    }

    /// The settings this client was built for (a reload that changes them
    /// builds a new one).
    pub fn settings(&self) -> &SharedLimits {
        &self.settings
    }

    /// The bound of one sync, connect included.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    /// One sync of `buckets` (site id, bucket): asks Redis for the tokens
    /// each wants and grants them, within `timeout_ms`; on failure every
    /// bucket enforces its local share until a sync succeeds.
    pub async fn sync(&mut self, buckets: &[(String, Arc<FleetBucket>)]) -> SyncOutcome {
        let asks: Vec<u64> = buckets.iter().map(|(_, b)| b.tokens_to_request()).collect();
        let timeout = self.timeout();
        let outcome = match tokio::time::timeout(timeout, self.round_trip(buckets, &asks)).await {
            Ok(Ok(granted)) => {
                for ((_, bucket), tokens) in buckets.iter().zip(granted) {
                    bucket.grant(tokens);
                }
                return SyncOutcome::Ok;
            }
            Ok(Err(e)) if e.is_timeout() => SyncOutcome::Timeout,
            Ok(Err(_)) => SyncOutcome::Error,
            Err(_) => SyncOutcome::Timeout,
        };
        // The connection may be half-dead (a stalled server): start afresh.
        self.connection = None;
        for (_, bucket) in buckets {
            bucket.set_degraded(true);
        }
        outcome
    }

    /// Connects if needed and runs the script; the grants per bucket (all
    /// zero for buckets that asked for nothing).
    async fn round_trip(
        &mut self,
        buckets: &[(String, Arc<FleetBucket>)],
        asks: &[u64],
    ) -> redis::RedisResult<Vec<u64>> {
        let connection = match self.connection.take() {
            Some(c) => c,
            None => {
                // The manager's own bounds only matter for its background
                // reconnects: the sync's bound (`timeout_ms`) fires first.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout() * 2))
                    .set_response_timeout(Some(self.timeout() * 2))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await?
            }
        };
        let connection = self.connection.insert(connection);
        let wanted: Vec<usize> = (0..buckets.len()).filter(|&i| asks[i] > 0).collect();
        let mut granted = vec![0; buckets.len()];
        if wanted.is_empty() {
            // Nothing to ask for: still prove Redis answers (leaves degraded mode).
            redis::cmd("PING").query_async::<String>(connection).await?;
            return Ok(granted);
        }
        let mut invocation = self.script.prepare_invoke();
        for &i in &wanted {
            let (site, bucket) = &buckets[i];
            let limit = bucket.limit();
            invocation
                .key(format!("{}{site}", self.settings.key_prefix))
                .arg(limit.events_per_second)
                .arg(limit.burst)
                .arg(asks[i]);
        }
        let answers: Vec<u64> = invocation.invoke_async(connection).await?;
        for (&i, tokens) in wanted.iter().zip(answers) {
            granted[i] = tokens;
        }
        Ok(granted)
    }
}
