//! Delivery of encrypted events to Kafka, and the broker readiness probe.
//!
//! The edge acknowledges an HTTP request only after the broker acknowledged
//! every record of it (`acks=all`, idempotent producer). A record that cannot
//! be delivered within `kafka.delivery_timeout_ms` fails the request with 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_config::Kafka as KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

/// Kafka header naming the bot reason on events a site keeps although a bot sent them.
pub const BOT_HEADER: &str = "edge-bot";

use crate::metrics::METRICS;

/// Why events were not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The local producer queue is full (broker slow or down for a while).
    #[error("kafka producer queue is full")]
    QueueFull,
    /// The broker did not acknowledge within the delivery timeout, or refused.
    #[error("kafka delivery failed: {0}")]
    Failed(String),
}

impl DeliveryError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Failed(_) => "failed",
        }
    }
}

/// Why the producer could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SinkSetupError {
    /// A secret file named in the config could not be read.
    #[error("{key}: cannot read {path}: {reason}")]
    SecretFile {
        /// Config key naming the file.
        key: &'static str,
        /// The path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// librdkafka refused the configuration.
    #[error("kafka producer configuration rejected: {0}")]
    Client(#[from] KafkaError),
}

/// The Kafka producer shared by all request handlers.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    delivery_timeout: Duration,
    ready: AtomicBool,
}

/// librdkafka properties derived from the `[kafka]` table.
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, SinkSetupError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "edge")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", cfg.compression.as_str())
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("message.timeout.ms", cfg.delivery_timeout_ms.to_string())
        .set(
            "request.timeout.ms",
            cfg.delivery_timeout_ms.clamp(100, 30_000).to_string(),
        );
    let tls = cfg.tls.is_some();
    let sasl = cfg.sasl.is_some();
    let protocol = match (tls, sasl) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    cc.set("security.protocol", protocol);
    if let Some(t) = &cfg.tls {
        if let Some(ca) = &t.ca_file {
            cc.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            cc.set("ssl.certificate.location", cert.display().to_string());
            cc.set("ssl.key.location", key.display().to_string());
        }
    }
    if let Some(s) = &cfg.sasl {
        let password =
            std::fs::read_to_string(&s.password_file).map_err(|e| SinkSetupError::SecretFile {
                key: "kafka.sasl.password_file",
                path: s.password_file.display().to_string(),
                reason: e.to_string(),
            })?;
        cc.set("sasl.mechanism", s.mechanism.as_str())
            .set("sasl.username", &s.username)
            .set("sasl.password", password.trim_end_matches(['\r', '\n']));
    }
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    Ok(cc)
}

impl KafkaSink {
    /// Creates the producer from settings made by [`client_config`]. It
    /// connects lazily; see [`KafkaSink::probe`].
    pub fn new(settings: ClientConfig, cfg: &KafkaConfig) -> Result<Self, SinkSetupError> {
        let producer: FutureProducer = settings.create()?;
        Ok(Self {
            producer,
            topic: cfg.topic.clone(),
            delivery_timeout: Duration::from_millis(cfg.delivery_timeout_ms),
            ready: AtomicBool::new(false),
        })
    }

    /// The topic events are written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Seconds a client should wait before retrying after a failed delivery.
    pub fn retry_after_seconds(&self) -> u64 {
        self.delivery_timeout.as_secs().max(1)
    }

    /// Whether the last probe reached the broker and found the topic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Sends every payload with key `site_id` and waits until the broker
    /// acknowledged all of them. Any failure fails the whole call; records
    /// that were acknowledged stay delivered (at-least-once on client retry).
    ///
    /// `bot` tags every record with an `edge-bot: REASON` header (events a
    /// site chose to keep although a bot sent them).
    pub async fn send_all(
        &self,
        site_id: &str,
        payloads: &[Vec<u8>],
        bot: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let started = Instant::now();
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(payloads.len());
        let mut first_error = None;
        for payload in payloads {
            let mut record = FutureRecord::to(&self.topic).key(site_id).payload(payload);
            if let Some(reason) = bot {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: BOT_HEADER,
                    value: Some(reason),
                }));
            }
            match self.producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    METRICS
                        .kafka_delivery
                        .with_label_values(&["queue_full"])
                        .inc();
                    first_error = Some(DeliveryError::QueueFull);
                    break;
                }
                Err((e, _)) => {
                    METRICS.kafka_delivery.with_label_values(&["failed"]).inc();
                    first_error = Some(DeliveryError::Failed(e.to_string()));
                    break;
                }
            }
        }
        // Backstop in case librdkafka's own message timeout does not fire.
        let deadline = self.delivery_timeout + Duration::from_secs(2);
        for future in pending {
            let outcome = match tokio::time::timeout(deadline, future).await {
                Ok(Ok(Ok(_delivery))) => Ok(()),
                Ok(Ok(Err((e, _msg)))) => Err(DeliveryError::Failed(e.to_string())),
                Ok(Err(_canceled)) => Err(DeliveryError::Failed("producer shut down".into())),
                Err(_) => Err(DeliveryError::Failed("no acknowledgement in time".into())),
            };
            match outcome {
                Ok(()) => {
                    METRICS.kafka_delivery.with_label_values(&["acked"]).inc();
                    METRICS
                        .kafka_delivery_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                Err(e) => {
                    METRICS.kafka_delivery.with_label_values(&["failed"]).inc();
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                self.ready.store(false, Ordering::Relaxed);
                METRICS.kafka_ready.set(0);
                Err(e)
            }
        }
    }

    /// Asks the broker for the topic's metadata; records and returns readiness.
    pub async fn probe(self: &Arc<Self>, timeout: Duration) -> bool {
        let sink = self.clone();
        let ready = tokio::task::spawn_blocking(move || {
            match sink
                .producer
                .client()
                .fetch_metadata(Some(&sink.topic), timeout)
            {
                Ok(md) => md.topics().iter().any(|t| {
                    t.name() == sink.topic && t.error().is_none() && !t.partitions().is_empty()
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "kafka metadata probe failed");
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        let was = self.ready.swap(ready, Ordering::Relaxed);
        if was != ready {
            if ready {
                tracing::info!(topic = %self.topic, "kafka producer ready");
            } else {
                tracing::warn!(topic = %self.topic, "kafka not reachable or topic missing");
            }
        }
        METRICS.kafka_ready.set(i64::from(ready));
        ready
    }

    /// Waits for queued records to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, in_flight = self.producer.in_flight_count(), "kafka flush incomplete at shutdown");
        }
    }
}
