//! The dead-letter topic: records that cannot be decrypted or parsed, or
//! whose content the store must not (or would not) take, are
//! re-published there unchanged (same key and value) with headers naming
//! where they came from and why, and the consumer goes on.

use std::time::Duration;

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

/// Why a record goes to the dead-letter topic: the value of the
/// [`HEADER_REASON`] header, of the `reason` label of
/// `edge_backend_dead_letters_total` and of the reason kept in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The record has no key (site id).
    MissingKey,
    /// The record key is not UTF-8.
    InvalidKey,
    /// The key names another site than the sealed event.
    SiteMismatch,
    /// The envelope cannot be opened; the `OpenError` kind
    /// (`decrypt_failed`, `bad_magic`, … — a fixed set).
    Unopenable(&'static str),
    /// A text field holds a control character.
    ControlCharacter,
    /// A value is longer than the store takes.
    ValueTooLong,
    /// The receive time is outside 1970..2100.
    BadTimestamp,
    /// The database refused the record.
    StoreRejected,
}

impl DeadLetterReason {
    /// The reason for a record the envelope layer refused.
    pub fn unopenable(e: &edge_envelope::open::OpenError) -> DeadLetterReason {
        DeadLetterReason::Unopenable(e.kind())
    }

    /// The fixed short name (header, metric label, SQL).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MissingKey => "missing_key",
            DeadLetterReason::InvalidKey => "invalid_key",
            DeadLetterReason::SiteMismatch => "site_mismatch",
            DeadLetterReason::Unopenable(kind) => kind,
            DeadLetterReason::ControlCharacter => "control_character",
            DeadLetterReason::ValueTooLong => "value_too_long",
            DeadLetterReason::BadTimestamp => "bad_timestamp",
            DeadLetterReason::StoreRejected => "store_rejected",
        }
    }
}

/// Why dead letters could not be delivered (the batch is then retried).
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The producer could not be created from the settings.
    #[error("cannot create dead-letter producer: {0}")]
    Create(rdkafka::error::KafkaError),
    /// librdkafka refused to queue a letter.
    #[error("cannot enqueue dead letter for {topic}: {error}")]
    Enqueue {
        /// The dead-letter topic.
        topic: String,
        /// librdkafka's error.
        error: rdkafka::error::KafkaError,
    },
    /// No acknowledgement within the delivery timeout.
    #[error("dead-letter delivery to {0} timed out")]
    Timeout(String),
    /// The producer dropped a delivery without an answer.
    #[error("dead-letter producer dropped a delivery")]
    Dropped,
    /// The broker refused a letter.
    #[error("dead-letter delivery to {topic} failed: {error}")]
    Delivery {
        /// The dead-letter topic.
        topic: String,
        /// The broker's error.
        error: rdkafka::error::KafkaError,
    },
}

/// A record that could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Short fixed reason (metric label and header).
    pub reason: DeadLetterReason,
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
                value: Some(self.reason.as_str()),
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
    ) -> Result<DlqProducer, DlqError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5");
        for (k, v) in properties {
            cc.set(k, v);
        }
        let producer: FutureProducer = cc.create().map_err(DlqError::Create)?;
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
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), DlqError> {
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
            let fut =
                self.producer
                    .send_result(record)
                    .map_err(|(error, _)| DlqError::Enqueue {
                        topic: self.topic.clone(),
                        error,
                    })?;
            pending.push(fut);
        }
        for fut in pending {
            match tokio::time::timeout(self.timeout, fut).await {
                Err(_) => return Err(DlqError::Timeout(self.topic.clone())),
                Ok(Err(_)) => return Err(DlqError::Dropped),
                Ok(Ok(Err((error, _)))) => {
                    return Err(DlqError::Delivery {
                        topic: self.topic.clone(),
                        error,
                    });
                }
                Ok(Ok(Ok(_))) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn headers_name_reason_and_origin() {
        let l = DeadLetter {
            reason: DeadLetterReason::Unopenable("bad_magic"),
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

    #[test]
    fn reasons_have_distinct_fixed_names() {
        let reasons = [
            DeadLetterReason::MissingKey,
            DeadLetterReason::InvalidKey,
            DeadLetterReason::SiteMismatch,
            DeadLetterReason::unopenable(&edge_envelope::open::OpenError::DecryptFailed),
            DeadLetterReason::ControlCharacter,
            DeadLetterReason::ValueTooLong,
            DeadLetterReason::BadTimestamp,
            DeadLetterReason::StoreRejected,
        ];
        let names: std::collections::BTreeSet<_> = reasons.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), reasons.len());
        assert!(names.contains("decrypt_failed"));
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
