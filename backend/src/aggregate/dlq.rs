//! The dead-letter topic: records that cannot be decrypted or parsed, or
//! whose content the store must not (or would not) take, are
//! re-published there unchanged (same key and value) with headers naming
//! where they came from and why, and the consumer goes on.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header holding the reason (`missing_key`, `invalid_key`, `site_mismatch`,
/// an `OpenError` kind such as `decrypt_failed`, a content check's
/// `control_character` / `value_too_long` / `bad_timestamp`, or
/// `store_rejected` for a record the database refused).
pub const HEADER_REASON: &str = "edge-dlq-reason";
/// Header holding the full error message.
pub const HEADER_ERROR: &str = "edge-dlq-error";
/// Header holding the original topic.
pub const HEADER_TOPIC: &str = "edge-dlq-topic";
/// Header holding the original partition (decimal).
pub const HEADER_PARTITION: &str = "edge-dlq-partition";
/// Header holding the original offset (decimal).
pub const HEADER_OFFSET: &str = "edge-dlq-offset";

/// A record that could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Short fixed reason (metric label and header).
    pub reason: &'static str,
    /// Error message.
    pub error: String,
    /// Original topic.
    pub topic: String,
    /// Original partition.
    pub partition: i32,
    /// Original offset.
    pub offset: i64,
    /// Original key, unchanged.
    pub key: Option<Vec<u8>>,
    /// Original value, unchanged.
    pub value: Option<Vec<u8>>,
}

impl DeadLetter {
    /// The headers written with the record.
    pub fn headers(&self) -> OwnedHeaders {
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        OwnedHeaders::new()
            .insert(Header {
                key: HEADER_REASON,
                value: Some(self.reason),
            })
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(self.error.as_str()),
            })
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(self.topic.as_str()),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_str()),
            })
    }
}

/// An idempotent, acks=all producer to the dead-letter topic.
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl DlqProducer {
    /// Creates the producer (`properties` are the consumer's extra librdkafka properties, e.g. TLS).
    pub fn new(
        brokers: &str,
        properties: &[(String, String)],
        topic: &str,
    ) -> anyhow::Result<DlqProducer> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5");
        for (k, v) in properties {
            cc.set(k, v);
        }
        let producer: FutureProducer = cc.create().context("cannot create dead-letter producer")?;
        Ok(DlqProducer {
            producer,
            topic: topic.to_string(),
            timeout: Duration::from_secs(15),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes every letter and waits until the broker acknowledged all of them.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        let mut pending = Vec::with_capacity(letters.len());
        for letter in letters {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(letter.headers());
            if let Some(k) = &letter.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &letter.value {
                record = record.payload(v.as_slice());
            }
            let fut = self.producer.send_result(record).map_err(|(e, _)| {
                anyhow::anyhow!("cannot enqueue dead letter for {}: {e}", self.topic)
            })?;
            pending.push(fut);
        }
        for fut in pending {
            match tokio::time::timeout(self.timeout, fut).await {
                Err(_) => anyhow::bail!("dead-letter delivery to {} timed out", self.topic),
                Ok(Err(_)) => anyhow::bail!("dead-letter producer dropped a delivery"),
                Ok(Ok(Err((e, _)))) => {
                    anyhow::bail!("dead-letter delivery to {} failed: {e}", self.topic)
                }
                Ok(Ok(Ok(_))) => {}
            }
        }
        if hold_after_dead_letters() {
            tracing::warn!(
                letters = letters.len(),
                "failpoint hold_after_dead_letters: dead letters acknowledged, holding before the offset commit"
            );
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// Test-only failpoint, off unless `EDGE_BACKEND_FAILPOINT=hold_after_dead_letters`
/// (read once): after the broker acknowledged a batch's dead letters, the
/// batch never reaches the offset commit, so a test can kill -9 the
/// aggregator in exactly that window (tests/tests/backend_poison.rs).
fn hold_after_dead_letters() -> bool {
    static HOLD: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("EDGE_BACKEND_FAILPOINT").is_ok_and(|v| v == "hold_after_dead_letters")
    });
    *HOLD
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn headers_name_reason_and_origin() {
        let l = DeadLetter {
            reason: "bad_magic",
            error: "not an envelope".into(),
            topic: "edge.events".into(),
            partition: 2,
            offset: 41,
            key: Some(b"site".to_vec()),
            value: Some(b"garbage".to_vec()),
        };
        let h = l.headers();
        let pairs: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                (HEADER_REASON.into(), "bad_magic".into()),
                (HEADER_ERROR.into(), "not an envelope".into()),
                (HEADER_TOPIC.into(), "edge.events".into()),
                (HEADER_PARTITION.into(), "2".into()),
                (HEADER_OFFSET.into(), "41".into()),
            ]
        );
    }
}
