//! The active configuration as JSON for `GET /admin/config`, with secrets
//! hidden.
//!
//! * Paths to secret files are shown (they are not secret).
//! * Every `[kafka.properties]` value is replaced by `"<redacted>"` unless
//!   its key is on [`HARMLESS_KAFKA_PROPERTIES`]: a credential can hide
//!   under any name (`sasl.oauthbearer.config`, a plugin's own key), so the
//!   list says what may be shown, not what must be hidden.
//! * Every URL anywhere in the configuration (`acme.on_demand.ask_url`,
//!   `acme.directory_url`, …) loses its userinfo, its query values and its
//!   fragment (`https://redacted:redacted@host/path?key=redacted`).

use serde_json::Value;

use crate::model::Config;

/// Replacement for redacted values.
pub const REDACTED: &str = "<redacted>";

/// Replacement for the parts of a URL that may hold credentials (a word
/// that needs no percent-encoding, so the URL stays readable).
pub const REDACTED_URL_PART: &str = "redacted";

/// librdkafka properties whose values are shown: tuning and protocol
/// choices, and the locations of public certificates. Everything else is
/// redacted, whatever its name.
pub const HARMLESS_KAFKA_PROPERTIES: &[&str] = &[
    "acks",
    "api.version.request",
    "batch.num.messages",
    "batch.size",
    "broker.address.family",
    "client.id",
    "client.rack",
    "compression.codec",
    "compression.type",
    "connections.max.idle.ms",
    "debug",
    "delivery.timeout.ms",
    "enable.idempotence",
    "linger.ms",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "message.max.bytes",
    "message.send.max.retries",
    "message.timeout.ms",
    "metadata.max.age.ms",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "request.timeout.ms",
    "retries",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.mechanism",
    "sasl.mechanisms",
    "security.protocol",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.timeout.ms",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.endpoint.identification.algorithm",
    "statistics.interval.ms",
    "sticky.partitioning.linger.ms",
    "topic.metadata.refresh.interval.ms",
];

/// Whether the value of the Kafka property `name` is shown as it is.
pub fn is_harmless_property(name: &str) -> bool {
    HARMLESS_KAFKA_PROPERTIES.contains(&name.to_ascii_lowercase().as_str())
}

/// `text` with the userinfo, query values and fragment of a URL replaced
/// by [`REDACTED_URL_PART`]; `None` when `text` is not an absolute URL or
/// holds none of them.
pub fn redact_url(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut url = url::Url::parse(text).ok()?;
    let userinfo = !url.username().is_empty() || url.password().is_some();
    if !userinfo && url.query().is_none() && url.fragment().is_none() {
        return None;
    }
    if userinfo {
        // Only cannot-be-a-base URLs refuse userinfo, and those have none.
        let _ = url.set_username(REDACTED_URL_PART);
        let _ = url.set_password(Some(REDACTED_URL_PART));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), REDACTED_URL_PART)));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(REDACTED_URL_PART));
    }
    Some(url.into())
}

/// Replaces credentials in every URL string inside `value`.
fn redact_urls(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        Value::Object(map) => map.values_mut().for_each(redact_urls),
        _ => {}
    }
}

impl Config {
    /// The configuration as JSON, safe to show to operators: Kafka property
    /// values not on [`HARMLESS_KAFKA_PROPERTIES`] are `"<redacted>"`, URLs
    /// lose userinfo, query values and fragment, and disabled listeners are
    /// `null`.
    pub fn redacted(&self) -> Value {
        let mut value = match serde_json::to_value(self) {
            Ok(value) => value,
            // Serializing plain data to JSON cannot fail (all map keys are
            // strings); keep the endpoint answering regardless.
            Err(e) => return Value::String(format!("cannot serialize configuration: {e}")),
        };
        if let Some(Value::Object(properties)) = value.pointer_mut("/kafka/properties") {
            for (name, v) in properties.iter_mut() {
                if !is_harmless_property(name) {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
        }
        redact_urls(&mut value);
        for listener in ["/listeners/http", "/listeners/https"] {
            if let Some(v) = value.pointer_mut(listener)
                && v.as_str() == Some("")
            {
                *v = Value::Null;
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::KafkaSasl;
    use crate::model::SaslMechanism;
    use crate::model_acme::Acme;

    #[test]
    fn kafka_values_are_shown_only_for_harmless_keys() {
        let mut config = Config::default();
        config.listeners.http = None;
        config.kafka.sasl = Some(KafkaSasl {
            mechanism: SaslMechanism::Plain,
            username: "edge".into(),
            password_file: "/run/secrets/kafka-password".into(),
        });
        for (k, v) in [
            ("ssl.key.password", "hunter2"),
            ("sasl.oauthbearer.client.secret", "s3cret"),
            (
                "sasl.oauthbearer.config",
                "principal=edge clientSecret=oauth-s3cret",
            ),
            ("foo.bar", "plain-secret"),
            ("ssl.keystore.location", "/x"),
            ("client.id", "edge-1"),
            ("Linger.MS", "7"),
        ] {
            config.kafka.properties.insert(k.into(), v.into());
        }
        let json = config.redacted();
        let props = &json["kafka"]["properties"];
        for k in [
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "foo.bar",
            "ssl.keystore.location",
        ] {
            assert_eq!(props[k], REDACTED, "{k}");
        }
        assert_eq!(props["client.id"], "edge-1");
        assert_eq!(props["Linger.MS"], "7");
        assert_eq!(
            json["kafka"]["sasl"]["password_file"],
            "/run/secrets/kafka-password"
        );
        assert_eq!(json["listeners"]["http"], Value::Null);
        assert_eq!(json["listeners"]["https"], "127.0.0.1:8443");
        let text = json.to_string();
        for secret in ["hunter2", "s3cret", "plain-secret"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn urls_lose_userinfo_query_values_and_fragment() {
        let mut config = Config::default();
        let acme: Acme = toml::from_str(
            "directory_url = \"https://acme.example/directory\"\n\
             storage_key_env = \"K\"\n\
             [on_demand]\n\
             ask_url = \"https://opsuser:pa55word@ask.example:8443/allow?api_key=k3y&site=a#t0k\"\n",
        )
        .unwrap();
        config.acme = Some(acme);
        let json = config.redacted();
        assert_eq!(
            json["acme"]["on_demand"]["ask_url"],
            "https://redacted:redacted@ask.example:8443/allow?api_key=redacted&site=redacted#redacted"
        );
        assert_eq!(
            json["acme"]["directory_url"],
            "https://acme.example/directory"
        );
        let text = json.to_string();
        for secret in ["opsuser", "pa55word", "k3y", "t0k"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn non_urls_are_left_alone() {
        for text in [
            "/etc/edge/key",
            "mailto:ops@example.com",
            "kafka:9092",
            "a b",
        ] {
            assert_eq!(redact_url(text), None, "{text}");
        }
        assert_eq!(
            redact_url("http://u@h/"),
            Some("http://redacted:redacted@h/".to_string())
        );
    }
}
