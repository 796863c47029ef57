//! Delivery of encrypted events to Kafka, and the broker readiness probe.
//!
//! The edge acknowledges an HTTP request only after the broker acknowledged
//! every record of it (`acks=all`, idempotent producer). A record that cannot
//! be delivered within `kafka.delivery_timeout_ms` fails the request with 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use edge_config::Kafka as KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use crate::kafka_batch::DeliveryBatch;
pub(crate) use crate::kafka_health::EdgeProducer;
use crate::kafka_health::{ErrorLog, ProducerContext, RebuildBackoff, RebuildReason};

/// Kafka header naming the bot reason on events a site keeps although a bot sent them.
pub(crate) const BOT_HEADER: &str = "edge-bot";

use crate::metrics::delivery_events::{
    KafkaReadiness, ProducerRebuildFailed, ProducerRebuilt, RecordDelivery, kafka_unready,
};

/// One record for [`KafkaSink::send_each`]: key, payload, bot reason.
pub(crate) type OutRecord<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

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
    #[error("{key}: {reason}")]
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
///
/// The producer behind it is replaced by a new one when librdkafka reports a
/// fatal error (for example `ProducerFenced` after the broker was paused):
/// an idempotent producer cannot continue after one, and without a rebuild
/// every later delivery fails until the process restarts.
pub struct KafkaSink {
    producer: ArcSwap<EdgeProducer>,
    /// Counts producer replacements, so a late failure of a replaced
    /// producer does not condemn its successor.
    generation: AtomicU64,
    /// Settings every producer generation is created from.
    settings: ClientConfig,
    errors: Arc<ErrorLog>,
    rebuild: Mutex<RebuildBackoff>,
    /// A delivery failed with a code that means the producer is finished.
    fatal_delivery: Mutex<Option<RebuildReason>>,
    topic: String,
    delivery_timeout: Duration,
    ready: AtomicBool,
    /// Set once the broker answered a probe or acknowledged a record since start.
    reached: AtomicBool,
}

/// librdkafka properties derived from the `[kafka]` table.
pub(crate) fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, SinkSetupError> {
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
        // 0600 required, like the admin token; the password is never logged.
        let password =
            edge_certs::secret_file::read_private_text(&s.password_file, "the SASL password")
                .map_err(|reason| SinkSetupError::SecretFile {
                    key: "kafka.sasl.password_file",
                    path: s.password_file.display().to_string(),
                    reason,
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

fn create_producer(
    settings: &ClientConfig,
    errors: &Arc<ErrorLog>,
) -> Result<EdgeProducer, KafkaError> {
    settings.create_with_context(ProducerContext::new(errors.clone()))
}

impl KafkaSink {
    /// Creates the producer from settings made by [`client_config`]. It
    /// connects lazily; see [`KafkaSink::probe`].
    pub fn new(settings: ClientConfig, cfg: &KafkaConfig) -> Result<Self, SinkSetupError> {
        let errors = Arc::new(ErrorLog::default());
        let producer = create_producer(&settings, &errors)?;
        Ok(Self {
            producer: ArcSwap::from_pointee(producer),
            generation: AtomicU64::new(0),
            settings,
            errors,
            rebuild: Mutex::new(RebuildBackoff::new()),
            fatal_delivery: Mutex::new(None),
            topic: cfg.topic.clone(),
            delivery_timeout: Duration::from_millis(cfg.delivery_timeout_ms),
            ready: AtomicBool::new(false),
            reached: AtomicBool::new(false),
        })
    }

    /// The topic events are written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The current producer. It may be replaced at any time after a fatal
    /// error: load it for each batch and do not keep it across awaits (the
    /// last holder of a replaced producer drops it, which blocks briefly).
    pub(crate) fn producer(&self) -> Arc<EdgeProducer> {
        self.producer.load_full()
    }

    /// Seconds a client should wait before retrying after a failed delivery.
    pub fn retry_after_seconds(&self) -> u64 {
        self.delivery_timeout.as_secs().max(1)
    }

    /// Whether the last probe reached the broker and found the topic, and
    /// no delivery failed since.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Why the broker refuses this edge's connection settings, if it does:
    /// the broker was never reached since start and a TLS, authentication
    /// or authorization failure was reported (wrong CA, missing or wrong
    /// client certificate, wrong credentials). Such an edge is kept out of
    /// rotation (`/readyz`). A broker that is merely down, slow or
    /// unreachable is not a refusal: the spool keeps accepting events then.
    pub fn refused_by_broker(&self) -> Option<String> {
        if self.reached.load(Ordering::Relaxed) {
            return None;
        }
        self.errors.refusal()
    }

    /// The broker's last error as `KIND: MESSAGE` (librdkafka's text: broker
    /// address and cause, never credentials), if there was one.
    pub fn last_error(&self) -> Option<String> {
        self.errors.last()
    }

    /// When [`KafkaSink::last_error`] happened.
    pub fn last_error_at(&self) -> Option<SystemTime> {
        self.errors.last_at()
    }

    /// Produces every record (key, payload, bot reason) in the given order,
    /// all enqueued before any acknowledgement is awaited, and returns one
    /// outcome per record (the first error, if any, alongside). librdkafka
    /// keeps the order of records of one key (same partition; idempotent
    /// producer), so a caller that hands records over in log order gets them
    /// on each partition in that order. Once a record cannot be enqueued
    /// (queue full, producer error), it and every later record fail without
    /// being handed to the producer, so no later record of a key overtakes
    /// an earlier one.
    pub async fn send_each(&self, records: &[OutRecord<'_>]) -> (Vec<bool>, Option<DeliveryError>) {
        let started = Instant::now();
        let mut delivered = vec![false; records.len()];
        let mut first_error = None;
        let batch = DeliveryBatch::new(records.len());
        let generation = self.generation.load(Ordering::Acquire);
        let producer = self.producer();
        for (i, (key, payload, bot)) in records.iter().enumerate() {
            let mut record = BaseRecord::with_opaque_to(&self.topic, batch.slot(i))
                .key(*key)
                .payload(*payload);
            if let Some(reason) = bot {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: BOT_HEADER,
                    value: Some(*reason),
                }));
            }
            let refused = match producer.send(record) {
                Ok(()) => continue,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    RecordDelivery::QueueFull.emit();
                    DeliveryError::QueueFull
                }
                Err((e, _)) => {
                    RecordDelivery::Failed { error: &e }.emit();
                    self.note_error_of(generation, &e);
                    DeliveryError::Failed(e.to_string())
                }
            };
            // This record and the later ones are not handed over (and no
            // answer is awaited for them), so no later record of a key
            // overtakes an earlier one.
            first_error = Some(refused);
            batch.truncate(i);
            break;
        }
        drop(producer);
        let deadline = tokio::time::Instant::now() + self.delivery_timeout + Duration::from_secs(2);
        let mut acked = 0usize;
        for (i, outcome) in batch.outcomes(deadline).await.into_iter().enumerate() {
            let outcome = match outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => {
                    self.note_error_of(generation, &e);
                    Err(DeliveryError::Failed(e.to_string()))
                }
                None => Err(DeliveryError::Failed("no acknowledgement in time".into())),
            };
            match outcome {
                Ok(()) => {
                    delivered[i] = true;
                    acked += 1;
                    RecordDelivery::Acked {
                        latency: started.elapsed(),
                    }
                    .emit();
                }
                Err(e) => {
                    RecordDelivery::Failed { error: &e }.emit();
                    first_error.get_or_insert(e);
                }
            }
        }
        if acked > 0 {
            self.reached.store(true, Ordering::Relaxed);
            self.note_delivered();
        }
        if first_error.is_some() {
            self.ready.store(false, Ordering::Relaxed);
            kafka_unready();
            self.rebuild_if_fatal();
        }
        (delivered, first_error)
    }

    /// Tells the sink a record failed with `e` (also for callers that produce
    /// through [`KafkaSink::producer`] themselves): a code that means the
    /// producer is finished schedules its replacement.
    pub fn note_delivery_error(&self, e: &KafkaError) {
        self.note_error_of(self.generation.load(Ordering::Acquire), e);
    }

    /// [`KafkaSink::note_delivery_error`] for a record produced by producer
    /// generation `generation`; ignored when that producer was already replaced.
    fn note_error_of(&self, generation: u64, e: &KafkaError) {
        if generation != self.generation.load(Ordering::Acquire) {
            return;
        }
        if let Some(reason) = e.rdkafka_error_code().and_then(RebuildReason::of)
            && let Ok(mut slot) = self.fatal_delivery.lock()
        {
            slot.get_or_insert(reason);
        }
    }

    /// Tells the sink the current producer delivered a record: rebuild
    /// backoff starts over.
    pub fn note_delivered(&self) {
        if let Ok(mut b) = self.rebuild.try_lock() {
            b.note_healthy();
        }
    }

    /// Why the current producer must be replaced, with librdkafka's text, if it must.
    fn fatal_state(&self, producer: &EdgeProducer) -> Option<(RebuildReason, String)> {
        let seen = self.errors.take_fatal_seen();
        if let Some((code, text)) = producer.client().fatal_error() {
            return Some((
                RebuildReason::of(code).unwrap_or(RebuildReason::Fatal),
                format!("{code:?}: {text}"),
            ));
        }
        let delivery = self.fatal_delivery.lock().ok().and_then(|mut s| s.take());
        match (delivery, seen) {
            (Some(r), _) => Some((r, format!("deliveries fail with {}", r.as_label()))),
            (None, true) => Some((RebuildReason::Fatal, "fatal error reported".into())),
            (None, false) => None,
        }
    }

    /// Replaces the producer when it hit a fatal error, unless the backoff
    /// since the previous rebuild has not passed (then the error stays noted
    /// and a later call retries). Returns whether the producer is (still)
    /// broken. Cheap when healthy: one librdkafka call.
    pub(crate) fn rebuild_if_fatal(&self) -> bool {
        let current = self.producer();
        let Some((reason, cause)) = self.fatal_state(&current) else {
            return false;
        };
        // Keeps the reason for a later attempt when this one does not rebuild.
        let keep = || {
            if let Ok(mut slot) = self.fatal_delivery.lock() {
                slot.get_or_insert(reason);
            }
        };
        let Ok(mut backoff) = self.rebuild.try_lock() else {
            keep(); // another caller holds the backoff right now
            return true;
        };
        let now = Instant::now();
        if !backoff.allows(now) {
            keep();
            return true;
        }
        let wait = backoff.note_rebuild(now);
        match create_producer(&self.settings, &self.errors) {
            Ok(fresh) => {
                let old = self.producer.swap(Arc::new(fresh));
                self.generation.fetch_add(1, Ordering::AcqRel);
                // Whatever was noted so far was about the old producer.
                if let Ok(mut slot) = self.fatal_delivery.lock() {
                    *slot = None;
                }
                self.errors.take_fatal_seen();
                drop(current);
                ProducerRebuilt {
                    reason,
                    cause: &cause,
                    next_rebuild_not_before: wait,
                }
                .emit();
                self.errors
                    .record(crate::kafka_health::ErrorKind::Fatal, &cause);
                // Dropping purges its queue and joins its threads (up to about
                // half a second): never on a request or runtime thread.
                let spawned = std::thread::Builder::new()
                    .name("kafka-producer-drop".into())
                    .spawn(move || drop(old));
                if let Err(e) = spawned {
                    // The closure, and with it the old producer, was dropped here.
                    tracing::error!(error = %e, "cannot start a thread to drop the old kafka producer; dropped it in place");
                }
                self.ready.store(false, Ordering::Relaxed);
                kafka_unready();
                true
            }
            Err(e) => {
                ProducerRebuildFailed { reason, error: &e }.emit();
                keep();
                true
            }
        }
    }

    /// Replaces a producer that hit a fatal error, then asks the broker for
    /// the topic's metadata; records and returns readiness.
    pub async fn probe(self: &Arc<Self>, timeout: Duration) -> bool {
        let sink = self.clone();
        let ready = tokio::task::spawn_blocking(move || {
            if sink.rebuild_if_fatal() {
                // A fresh producer is probed next time; a broken one is not ready.
                return false;
            }
            let producer = sink.producer();
            match producer.client().fetch_metadata(Some(&sink.topic), timeout) {
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
        if ready {
            self.reached.store(true, Ordering::Relaxed);
        }
        let last_error = if ready { None } else { self.last_error() };
        KafkaReadiness {
            ready,
            changed: was != ready,
            topic: &self.topic,
            last_error: last_error.as_deref(),
        }
        .emit();
        ready
    }

    /// Waits for queued records to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) {
        let producer = self.producer();
        if let Err(e) = producer.flush(timeout) {
            tracing::warn!(error = %e, in_flight = producer.in_flight_count(), "kafka flush incomplete at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;
    use crate::metrics::METRICS;
    use crate::metrics::delivery_events::DeliveryOutcome;
    use crate::test_kafka::{cluster, read_back, sink};

    fn deliveries(outcome: DeliveryOutcome) -> u64 {
        METRICS
            .kafka_delivery
            .with_label_values(&[outcome.as_label()])
            .get()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_record_is_acked_in_the_given_order_with_its_bot_header() {
        let cluster = cluster(1);
        let brokers = cluster.bootstrap_servers();
        let sink = Arc::new(sink(&brokers, |_| {}));
        assert!(sink.probe(Duration::from_secs(10)).await, "probe");
        assert!(sink.is_ready());
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 3]).collect();
        let records: Vec<OutRecord<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let bot: Option<&[u8]> = (i == 7).then_some(b"crawler".as_slice());
                (b"site-a".as_slice(), p.as_slice(), bot)
            })
            .collect();
        let acked_before = deliveries(DeliveryOutcome::Acked);
        let (delivered, error) = sink.send_each(&records).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(delivered, vec![true; 20]);
        assert!(deliveries(DeliveryOutcome::Acked) >= acked_before + 20);
        assert!(sink.is_ready(), "a good delivery keeps the sink ready");
        assert_eq!(sink.refused_by_broker(), None);
        let stored = read_back(&brokers, 1, 20);
        assert_eq!(
            stored.iter().map(|s| s.payload.clone()).collect::<Vec<_>>(),
            payloads,
            "broker order is the given order"
        );
        assert!(stored.iter().all(|s| s.key == b"site-a"));
        let tagged: Vec<usize> = (0..20).filter(|i| stored[*i].bot.is_some()).collect();
        assert_eq!(tagged, vec![7]);
        assert_eq!(stored[7].bot.as_deref(), Some(b"crawler".as_slice()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_producer_queue_fails_that_record_and_every_later_one_unsent() {
        let cluster = cluster(1);
        let brokers = cluster.bootstrap_servers();
        // Room for two records; a long linger keeps them queued meanwhile.
        let sink = sink(&brokers, |k| {
            k.linger_ms = 500;
            k.properties
                .insert("queue.buffering.max.messages".into(), "2".into());
        });
        let full_before = deliveries(DeliveryOutcome::QueueFull);
        let records: Vec<OutRecord<'_>> = (0..5)
            .map(|_| (b"k".as_slice(), b"v".as_slice(), None))
            .collect();
        let (delivered, error) = sink.send_each(&records).await;
        assert!(matches!(error, Some(DeliveryError::QueueFull)), "{error:?}");
        assert_eq!(error.as_ref().map(DeliveryError::kind), Some("queue_full"));
        assert_eq!(delivered, vec![true, true, false, false, false]);
        // Counted once: the records after it were never handed over.
        assert_eq!(deliveries(DeliveryOutcome::QueueFull), full_before + 1);
        assert!(!sink.is_ready());
        // Only the two enqueued records reached the broker.
        assert_eq!(read_back(&brokers, 1, 2).len(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_produce_fails_the_records_and_the_sink_recovers() {
        let cluster = cluster(1);
        let brokers = cluster.bootstrap_servers();
        let sink = Arc::new(sink(&brokers, |_| {}));
        assert!(sink.probe(Duration::from_secs(10)).await);
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4],
        );
        let failed_before = deliveries(DeliveryOutcome::Failed);
        let records = [(b"k".as_slice(), b"refused".as_slice(), None)];
        let (delivered, error) = sink.send_each(&records).await;
        assert_eq!(delivered, vec![false]);
        assert!(matches!(error, Some(DeliveryError::Failed(_))), "{error:?}");
        assert!(deliveries(DeliveryOutcome::Failed) > failed_before);
        assert!(!sink.is_ready(), "a failed delivery makes the sink unready");
        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        // The next probe and delivery work again.
        assert!(sink.probe(Duration::from_secs(10)).await);
        let records = [(b"k".as_slice(), b"accepted".as_slice(), None)];
        let (delivered, error) = sink.send_each(&records).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(delivered, vec![true]);
        let stored = read_back(&brokers, 1, 1);
        assert_eq!(stored[0].payload, b"accepted");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_fenced_producer_is_replaced_and_counted() {
        let cluster = cluster(1);
        let brokers = cluster.bootstrap_servers();
        let sink = Arc::new(sink(&brokers, |_| {}));
        assert!(sink.probe(Duration::from_secs(10)).await);
        let rebuilds = || {
            METRICS
                .kafka_health
                .producer_rebuilds
                .with_label_values(&["producer_fenced"])
                .get()
        };
        let before = rebuilds();
        let old = sink.producer();
        // What a delivery failure with this code tells the sink.
        sink.note_delivery_error(&KafkaError::MessageProduction(
            RDKafkaErrorCode::ProducerFenced,
        ));
        assert!(sink.rebuild_if_fatal(), "replaced");
        assert!(!Arc::ptr_eq(&old, &sink.producer()), "a new producer");
        drop(old);
        assert_eq!(rebuilds(), before + 1);
        assert!(!sink.is_ready());
        assert!(
            sink.last_error().unwrap().starts_with("fatal: "),
            "{:?}",
            sink.last_error()
        );
        // Nothing fatal is left: the new producer is healthy and delivers.
        assert!(!sink.rebuild_if_fatal());
        let (delivered, error) = sink
            .send_each(&[(b"k".as_slice(), b"after".as_slice(), None)])
            .await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(delivered, vec![true]);
        assert_eq!(read_back(&brokers, 1, 1)[0].payload, b"after");
    }
}
