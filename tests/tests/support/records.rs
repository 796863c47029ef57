//! Hand-made event records, sealed with a backend key and produced straight
//! to Kafka (as a tampering edge, or a replay, would).

use std::path::PathBuf;
use std::time::Duration;

use edge_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::aggregate::{Aggregator, DLQ};

/// A sealer for the backend key, as the edge would hold it.
pub fn sealer_for(key: &BackendKey) -> edge_envelope::Sealer {
    edge_envelope::Sealer::new(
        edge_envelope::PublicKey::from_base64(&key.public_key).unwrap(),
        edge_envelope::RotationPolicy::default(),
    )
    .unwrap()
}

/// An event record as the edge builds it; `id` fills the event id (0: none).
pub fn record(
    site: &str,
    ms: i64,
    name: &str,
    path: &str,
    visitor: u8,
    id: u32,
) -> edge_envelope::EventRecord {
    let mut event_id = [0u8; 16];
    if id != 0 {
        event_id[..4].copy_from_slice(&id.to_be_bytes());
        event_id[15] = 0xA5;
    }
    edge_envelope::EventRecord {
        site_id: site.into(),
        received_at_ms: ms,
        name: name.into(),
        url: format!("https://{site}.test{path}"),
        referrer: None,
        utm: edge_envelope::Utm::default(),
        props: vec![],
        visitor_id: [visitor; 16],
        device: edge_envelope::DeviceClass::Desktop,
        browser: edge_envelope::BrowserFamily::Firefox,
        os: edge_envelope::OsFamily::Linux,
        event_id,
    }
}

pub fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Produces one record and waits for the broker's ack: (partition, offset).
pub async fn produce(p: &FutureProducer, topic: &str, site: &str, payload: &[u8]) -> (i32, i64) {
    let d = p
        .send(
            FutureRecord::to(topic).key(site).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    (d.partition, d.offset)
}

/// A broker with `topic` and the dead-letter topic, a backend key, and a
/// producer: for tests that produce hand-made records straight to Kafka.
pub struct RawTopic {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub topic: &'static str,
    pub keys: PathBuf,
    pub sealer: edge_envelope::Sealer,
    pub producer: FutureProducer,
}

impl RawTopic {
    pub async fn new(topic: &'static str, partitions: i32) -> RawTopic {
        init_crypto();
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        broker.create_topic(topic, partitions).await;
        broker.create_topic(DLQ, 1).await;
        let keys = dir.path().join("keys");
        let key = BackendKey::generate(&keys);
        RawTopic {
            sealer: sealer_for(&key),
            producer: producer(&broker),
            dir,
            broker,
            topic,
            keys,
        }
    }

    /// Seals `r` for its site and produces it: (partition, offset).
    pub async fn produce_record(&self, r: &edge_envelope::EventRecord) -> (i32, i64) {
        let sealed = self.sealer.seal(&r.site_id, r).unwrap();
        produce(&self.producer, self.topic, &r.site_id, &sealed).await
    }

    /// An aggregator over the topic into `db_url`, with `env` for the process.
    pub fn aggregator(&self, db_url: &str, batch_size: usize, env: &[(&str, &str)]) -> Aggregator {
        Aggregator::start_env(
            self.dir.path(),
            &self.broker.addr,
            self.topic,
            &self.keys,
            db_url,
            batch_size,
            env,
        )
    }
}
