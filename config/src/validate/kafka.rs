//! Rules of the `[kafka]` table: brokers, topic, timeouts, TLS and SASL
//! files, and the properties the edge owns.

use std::collections::BTreeMap;

use super::{Validator, split_host_port};
use crate::defaults;
use crate::locate::join_key;
use crate::model::Kafka;

impl Validator {
    pub(super) fn kafka(&mut self, kafka: &Kafka) {
        if let Err(problem) = check_brokers(&kafka.brokers) {
            self.err("kafka.brokers", problem);
        }
        if let Err(problem) = check_topic(&kafka.topic) {
            self.err("kafka.topic", problem);
        }
        self.range(
            "kafka.delivery_timeout_ms",
            kafka.delivery_timeout_ms,
            defaults::DELIVERY_TIMEOUT_MS_RANGE,
        );
        self.range(
            "kafka.linger_ms",
            kafka.linger_ms,
            defaults::LINGER_MS_RANGE,
        );
        if kafka.delivery_timeout_ms <= u64::from(kafka.linger_ms) {
            self.err(
                "kafka.delivery_timeout_ms",
                format!("must be greater than kafka.linger_ms ({})", kafka.linger_ms),
            );
        }
        if let Some(tls) = &kafka.tls {
            match (&tls.cert_file, &tls.key_file) {
                (Some(_), None) => self.err(
                    "kafka.tls.cert_file",
                    "is set but kafka.tls.key_file is not; set both or neither",
                ),
                (None, Some(_)) => self.err(
                    "kafka.tls.key_file",
                    "is set but kafka.tls.cert_file is not; set both or neither",
                ),
                _ => {}
            }
            let files = [
                ("kafka.tls.ca_file", &tls.ca_file),
                ("kafka.tls.cert_file", &tls.cert_file),
                ("kafka.tls.key_file", &tls.key_file),
            ];
            for (key, file) in files {
                if let Some(file) = file {
                    self.non_empty_path(key, file);
                }
            }
        }
        if let Some(sasl) = &kafka.sasl {
            if sasl.username.is_empty() {
                self.err("kafka.sasl.username", "must not be empty");
            }
            self.non_empty_path("kafka.sasl.password_file", &sasl.password_file);
        }
        self.kafka_properties(&kafka.properties);
    }

    fn kafka_properties(&mut self, properties: &BTreeMap<String, String>) {
        for name in properties.keys() {
            let key = join_key("kafka.properties", name);
            if name.trim().is_empty() {
                self.err(key, "property name must not be empty");
            } else if let Some(owned) = defaults::RESERVED_KAFKA_PROPERTIES
                .iter()
                .find(|owned| owned.eq_ignore_ascii_case(name.trim()))
            {
                self.err(
                    key,
                    format!(
                        "property {owned:?} is set by the edge and cannot be overridden{}",
                        reserved_hint(owned)
                    ),
                );
            }
        }
    }
}

/// Which typed key replaces a reserved Kafka property, if any.
fn reserved_hint(property: &str) -> &'static str {
    match property {
        "bootstrap.servers" | "metadata.broker.list" => "; use kafka.brokers",
        "compression.type" | "compression.codec" => "; use kafka.compression",
        "linger.ms" | "queue.buffering.max.ms" => "; use kafka.linger_ms",
        "delivery.timeout.ms" | "message.timeout.ms" => "; use kafka.delivery_timeout_ms",
        "security.protocol" => "; it follows from [kafka.tls] and [kafka.sasl]",
        "ssl.ca.location" | "ssl.certificate.location" | "ssl.key.location" => "; use [kafka.tls]",
        "sasl.mechanism" | "sasl.mechanisms" | "sasl.username" | "sasl.password" => {
            "; use [kafka.sasl]"
        }
        _ => "",
    }
}

/// Checks a comma-separated `host:port` broker list.
fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("must list at least one broker as \"host:port\"".to_owned());
    }
    for broker in brokers.split(',').map(str::trim) {
        let (host, port) = split_host_port(broker);
        let port_ok = port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
        if host.is_empty() || !port_ok || host.contains(char::is_whitespace) {
            return Err(format!(
                "invalid broker {broker:?}: expected \"host:port\" (comma-separated for several)"
            ));
        }
    }
    Ok(())
}

/// Checks a Kafka topic name: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!(
            "topic name {topic:?} must be 1 to 249 characters long"
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic name {topic:?} is not allowed"));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {topic:?} contains {c:?}; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_topics() {
        assert_eq!(check_brokers("a:9092, b.example.com:9093"), Ok(()));
        assert_eq!(check_brokers("[::1]:9092"), Ok(()));
        assert!(check_brokers("a").is_err());
        assert!(check_brokers("a:9092,").is_err());
        assert!(check_brokers("").is_err());
        assert_eq!(check_topic("edge.events_v1-x"), Ok(()));
        assert!(check_topic("..").is_err());
        assert!(check_topic("a b").is_err());
        assert!(check_topic(&"a".repeat(250)).is_err());
    }
}
