//! librdkafka's in-process mock cluster for the unit tests of the delivery
//! path (`kafka.rs`, `shipper.rs`): a [`KafkaSink`] pointed at it, and a
//! reader of what reached a topic. Integration tests use a real broker
//! (Tansu, tests/).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::{BOT_HEADER, KafkaSink, client_config};

/// The topic the tests produce to.
pub(crate) const TOPIC: &str = "edge-unit";

/// A one-broker mock cluster with [`TOPIC`] of `partitions` partitions.
pub(crate) fn cluster(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, partitions, 1).unwrap();
    cluster
}

/// A sink on `brokers` with a short delivery timeout; `tweak` edits the
/// `[kafka]` table first.
pub(crate) fn sink(brokers: &str, tweak: impl FnOnce(&mut edge_config::Kafka)) -> KafkaSink {
    let mut cfg = edge_config::Kafka {
        brokers: brokers.to_string(),
        topic: TOPIC.to_string(),
        delivery_timeout_ms: 3_000,
        linger_ms: 1,
        ..edge_config::Kafka::default()
    };
    tweak(&mut cfg);
    KafkaSink::new(client_config(&cfg).unwrap(), &cfg).unwrap()
}

/// One record as the broker has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its partition.
    pub partition: i32,
    /// Its key.
    pub key: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The `edge-bot` header's value.
    pub bot: Option<Vec<u8>>,
}

/// Reads `count` records of [`TOPIC`] (all `partitions`) from the start,
/// in each partition's order; fails after 30 s without them.
pub(crate) fn read_back(brokers: &str, partitions: i32, count: usize) -> Vec<Stored> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "edge-unit-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records arrived: {out:?}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let bot = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == BOT_HEADER)
                    .and_then(|h| h.value.map(<[u8]>::to_vec))
            });
            out.push(Stored {
                partition: m.partition(),
                key: m.key().unwrap_or_default().to_vec(),
                payload: m.payload().unwrap_or_default().to_vec(),
                bot,
            });
        }
    }
    out
}
