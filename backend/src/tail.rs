//! `edge-backend tail`: consume the events topic, decrypt, print JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use edge_envelope::EventRecord;
use edge_envelope::open::Opener;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic to read.
    pub topic: String,
    /// Consumer group id.
    pub group: String,
    /// Stop after this many events (decrypted or not).
    pub max_events: Option<u64>,
    /// Stop after this long without a message.
    pub idle_timeout: Option<Duration>,
    /// Extra librdkafka properties (TLS, SASL…).
    pub properties: Vec<(String, String)>,
}

/// Counts of one tail run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailSummary {
    /// Records decrypted and printed.
    pub printed: u64,
    /// Records that failed to decrypt or decode (reported on stderr).
    pub failed: u64,
}

/// Renders a decrypted record as one JSON object (visitor id as hex).
pub fn event_json(
    site: &str,
    partition: i32,
    offset: i64,
    record: &EventRecord,
) -> serde_json::Value {
    let mut event = serde_json::to_value(record).unwrap_or_default();
    if let Some(obj) = event.as_object_mut() {
        obj.insert(
            "visitor_id".into(),
            serde_json::Value::String(hex::encode(record.visitor_id)),
        );
    }
    serde_json::json!({ "site": site, "partition": partition, "offset": offset, "event": event })
}

/// Why `tail` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The consumer could not be created, subscribed or read from.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Writing a line to the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Why the private keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// A key directory could not be listed.
    #[error("cannot list {}: {error}", dir.display())]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A key file could not be read or parsed.
    #[error(transparent)]
    Key(#[from] edge_envelope::keys::KeyError),
    /// No key was found in the paths given.
    #[error("no private keys found in {0:?}")]
    NoKeys(Vec<PathBuf>),
}

/// Creates the consumer, subscribed to the topic, reading from the earliest
/// offset when the group has none committed.
pub fn consumer(opts: &TailOptions) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in &opts.properties {
        cc.set(k, v);
    }
    let consumer: StreamConsumer = cc.create()?;
    consumer.subscribe(&[&opts.topic])?;
    Ok(consumer)
}

/// Consumes until `max_events`, `idle_timeout` or `stop` resolves; prints one
/// JSON line per decrypted event to `out` and one line per failure to stderr.
pub async fn run<W: Write>(
    opts: &TailOptions,
    opener: &Opener,
    out: &mut W,
    stop: impl std::future::Future<Output = ()>,
) -> Result<TailSummary, TailError> {
    let consumer = consumer(opts)?;
    let mut summary = TailSummary::default();
    tokio::pin!(stop);
    loop {
        if opts
            .max_events
            .is_some_and(|m| summary.printed + summary.failed >= m)
        {
            break;
        }
        let idle = opts
            .idle_timeout
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let msg = tokio::select! {
            _ = &mut stop => break,
            r = tokio::time::timeout(idle, consumer.recv()) => match r {
                Err(_) => break,
                Ok(m) => m?,
            },
        };
        let site = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
        let payload = msg.payload().unwrap_or_default();
        match opener.open(&site, payload) {
            Ok(record) => {
                summary.printed += 1;
                let mut line = event_json(&site, msg.partition(), msg.offset(), &record);
                if let Some(reason) = bot_reason(&msg) {
                    line["bot"] = serde_json::Value::String(reason);
                }
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Err(e) => {
                summary.failed += 1;
                eprintln!(
                    "{{\"site\":{site:?},\"partition\":{},\"offset\":{},\"error\":{:?}}}",
                    msg.partition(),
                    msg.offset(),
                    e.to_string()
                );
            }
        }
    }
    Ok(summary)
}

/// The `edge-bot` header the edge sets on bots' events a site keeps.
pub fn bot_reason(msg: &impl Message) -> Option<String> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == "edge-bot")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Loads private keys from files and directories (every `*.key` inside).
pub fn load_keys(paths: &[PathBuf]) -> Result<edge_envelope::keys::Keyring, KeyLoadError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let list_error = |error| KeyLoadError::ListDir {
                dir: path.clone(),
                error,
            };
            for entry in std::fs::read_dir(path).map_err(list_error)? {
                let file = entry.map_err(list_error)?.path();
                if file.extension().is_some_and(|e| e == "key") {
                    files.push(file);
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    let keyring = edge_envelope::keys::Keyring::load_paths(&files)?;
    if keyring.is_empty() {
        return Err(KeyLoadError::NoKeys(paths.to_vec()));
    }
    Ok(keyring)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use edge_envelope::keys::PrivateKey;

    #[test]
    fn keys_load_from_files_and_key_files_in_directories() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::fs::write(empty.join("notes.txt"), "not a key").unwrap();
        let err = load_keys(std::slice::from_ref(&empty)).unwrap_err();
        assert!(matches!(err, KeyLoadError::NoKeys(_)), "{err}");
        let key = PrivateKey::generate();
        key.write_file(empty.join("a.key")).unwrap();
        let ring = load_keys(std::slice::from_ref(&empty)).unwrap();
        assert_eq!(ring.ids(), vec![key.key_id()]);
        let missing = load_keys(&[dir.path().join("absent.key")]).unwrap_err();
        assert!(matches!(missing, KeyLoadError::Key(_)), "{missing}");
    }
}
