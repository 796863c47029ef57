//! The active configuration as JSON for `GET /admin/config`, with secrets
//! hidden.
//!
//! Paths to secret files are shown (they are not secret); values of Kafka
//! properties that look like credentials are replaced by `"<redacted>"`.

use serde_json::Value;

use crate::model::Config;

/// Replacement for redacted values.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a Kafka property as a credential (matched
/// case-insensitively anywhere in the property name).
const SECRET_WORDS: &[&str] = &["password", "secret", "token", "key"];

/// Whether the value of the Kafka property `name` is redacted.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

impl Config {
    /// The configuration as JSON, safe to show to operators: Kafka properties
    /// whose name contains `password`, `secret`, `token` or `key` have their
    /// value replaced by `"<redacted>"`, and disabled listeners are `null`.
    pub fn redacted(&self) -> Value {
        let mut value = match serde_json::to_value(self) {
            Ok(value) => value,
            // Serializing plain data to JSON cannot fail (all map keys are
            // strings); keep the endpoint answering regardless.
            Err(e) => return Value::String(format!("cannot serialize configuration: {e}")),
        };
        if let Some(Value::Object(properties)) = value.pointer_mut("/kafka/properties") {
            for (name, v) in properties.iter_mut() {
                if is_secret_property(name) {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
        }
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
    use super::*;
    use crate::model::KafkaSasl;
    use crate::model::SaslMechanism;

    #[test]
    fn secrets_are_redacted_and_files_shown() {
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
            ("Some.TOKEN.value", "tok"),
            ("ssl.keystore.location", "/x"),
            ("client.id", "edge-1"),
        ] {
            config.kafka.properties.insert(k.into(), v.into());
        }
        let json = config.redacted();
        let props = &json["kafka"]["properties"];
        assert_eq!(props["ssl.key.password"], REDACTED);
        assert_eq!(props["sasl.oauthbearer.client.secret"], REDACTED);
        assert_eq!(props["Some.TOKEN.value"], REDACTED);
        assert_eq!(props["ssl.keystore.location"], REDACTED);
        assert_eq!(props["client.id"], "edge-1");
        assert_eq!(
            json["kafka"]["sasl"]["password_file"],
            "/run/secrets/kafka-password"
        );
        assert_eq!(json["listeners"]["http"], Value::Null);
        assert_eq!(json["listeners"]["https"], "127.0.0.1:8443");
        let text = json.to_string();
        for secret in ["hunter2", "s3cret", "\"tok\""] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
}
