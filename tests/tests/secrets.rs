//! "Secrets are never logged": an edge holding an ACME storage key, an admin
//! token and a SASL password, and backend processes holding the SASL
//! password, run a scenario that uses every secret (a SCRAM login over TLS
//! that the broker refuses, a certificate from pebble sealed in the store and
//! a forced renewal, admin calls with right and wrong tokens, reloads, events
//! into the spool, shutdown), with debug logging. Then every log is searched
//! for every secret.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_tests::kafka_tls::{ClientAuth, TlsBroker};
use edge_tests::pebble::{Pebble, tls_connect, write_storage_key};
use edge_tests::*;

const TOPIC: &str = "secrets-events";
const SASL_PASSWORD: &str = "s3cret-sasl-password-7f1e";
const ADMIN_TOKEN: &str = "admin-token-never-logged-4c2b9a";
/// Debug everywhere: a secret in any debug line counts too.
const RUST_LOG: &str = "debug";

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every form of a secret that must not appear: the text, and for the
/// storage key its bytes in hex too.
fn forms(name: &str, text: &str) -> Vec<(String, String)> {
    let mut out = vec![(name.to_string(), text.to_string())];
    use base64::Engine;
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out.push((format!("{name} (hex)"), hex));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = TlsBroker::start_with(&d.join("pki"), ClientAuth::None, &["--authentication"]);
    let key = BackendKey::generate(&d.join("keys"));

    let password_file = d.join("sasl.password");
    write_private(&password_file, &format!("{SASL_PASSWORD}\n"));
    let token_file = d.join("admin.token");
    write_private(&token_file, ADMIN_TOKEN);
    let storage_key_file = d.join("storage.key");
    write_storage_key(&storage_key_file);
    let storage_key = std::fs::read_to_string(&storage_key_file)
        .unwrap()
        .trim()
        .to_string();

    let sasl = format!(
        "{}[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"edge\"\npassword_file = {:?}\n",
        broker.edge_tls_toml(),
        password_file.display().to_string()
    );
    let config = EdgeUnderTest::new(d, &broker.addr, TOPIC, &key);
    // ACME against a real CA: the certificate's key is sealed with the storage key.
    let pebble = Pebble::start(d, &config.ports, 3600);
    let config = config
        .raw(&pebble.acme_table(&storage_key_file, ""))
        .admin(&format!(
            "token_file = {:?}",
            token_file.display().to_string()
        ))
        .site("s1", &["site1.example", "secrets.example.com"])
        .raw(&sasl)
        .options(EdgeOptions {
            rust_log: Some(RUST_LOG.into()),
            ..EdgeOptions::default()
        });
    let mut edge = config.start_unready().await;
    edge.admin_token = Some(ADMIN_TOKEN.into());

    // The SASL password is used: the broker refuses the unknown user.
    assert_eventually!(
        edge.log().contains("SASL SCRAM authentication failed"),
        Duration::from_secs(30),
        "no SCRAM login was attempted:\n{}",
        edge.log()
    );
    // The storage key seals the certificate's key in the store.
    let root = pebble.root().await;
    assert_eventually!(
        tls_connect(edge.ports.https, "secrets.example.com", &root)
            .await
            .is_ok(),
        Duration::from_secs(60),
        "no certificate for secrets.example.com:\n{}",
        edge.log()
    );
    assert!(d.join("data/acme/certs/secrets.example.com.json").is_file());
    // Events are accepted into the spool.
    for i in 0..5 {
        let r = browser()
            .post(format!("http://{}/api/event", edge.ports.http))
            .header("host", "site1.example")
            .body(format!(
                r#"{{"name":"pageview","url":"https://site1.example/{i}"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // The admin token: refused without it and with a wrong one, accepted as
    // the bearer token, for a reload, the config view and a forced renewal.
    let admin = |path: &str, token: Option<&str>| {
        let mut r = reqwest::Client::new().post(format!("http://{}{path}", edge.ports.admin));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(admin("/admin/reload", None).await.unwrap().status(), 401);
    assert_eq!(
        admin("/admin/reload", Some("not-the-token-at-all-000000"))
            .await
            .unwrap()
            .status(),
        401
    );
    let r = admin("/admin/reload", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = admin(
        "/admin/certs/renew?name=secrets.example.com",
        Some(ADMIN_TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert_eventually!(
        edge.metric("edge_acme_renewals_total", &[("outcome", "renewed")])
            .await
            >= 1.0,
        Duration::from_secs(60),
        "the forced renewal did not complete:\n{}",
        edge.log()
    );
    let view = reqwest::Client::new()
        .get(format!("http://{}/admin/config", edge.ports.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A changed config (a new site) reloads through the file watcher.
    config.clone().site("s2", &["site2.example"]).write();
    assert_eventually!(
        edge.metric("edge_config_reloads_total", &[("outcome", "applied")])
            .await
            >= 1.0,
        Duration::from_secs(30),
        "the config change was not applied:\n{}",
        edge.log()
    );
    assert!(edge.terminate(Duration::from_secs(30)), "{}", edge.log());

    // The backend with the same password, from its 0600 properties file.
    let props = d.join("sasl.properties");
    let mut p = broker.client_properties();
    p.retain(|(k, _)| k != "security.protocol");
    p.extend([
        ("security.protocol".to_string(), "sasl_ssl".to_string()),
        ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
        ("sasl.username".to_string(), "edge".to_string()),
        ("sasl.password".to_string(), SASL_PASSWORD.to_string()),
    ]);
    write_private(
        &props,
        &p.iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    );
    let tail_log = d.join("tail.log");
    let out = Command::new(bin("edge-backend"))
        .args([
            "tail",
            "--brokers",
            &broker.addr,
            "--topic",
            TOPIC,
            "--keys",
        ])
        .arg(&key.private_key_path)
        .args(["--count", "1", "--idle-timeout-seconds", "10"])
        .arg("--properties-file")
        .arg(&props)
        .env("RUST_LOG", RUST_LOG)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tail_log).unwrap())
        .status()
        .unwrap();
    assert!(!out.success(), "tail read a topic it cannot log in to");
    let tail_text = std::fs::read_to_string(&tail_log).unwrap();
    assert!(
        tail_text.to_ascii_lowercase().contains("authentication"),
        "tail did not attempt the login:\n{tail_text}"
    );

    let agg_log = d.join("aggregate.log");
    let db_url = format!("sqlite://{}?mode=rwc", d.join("agg.db").display());
    let agg = Command::new(bin("edge-backend"))
        .args(["aggregate", "--brokers", &broker.addr, "--topic", TOPIC])
        .arg("--keys")
        .arg(&key.private_key_path)
        .args([
            "--db",
            &db_url,
            "--http",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--properties-file")
        .arg(&props)
        .env("RUST_LOG", RUST_LOG)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agg_log).unwrap())
        .spawn()
        .unwrap();
    let agg = ChildGuard(agg);
    assert_eventually!(
        std::fs::read_to_string(&agg_log)
            .unwrap()
            .to_ascii_lowercase()
            .contains("authentication"),
        Duration::from_secs(30),
        "aggregate did not attempt the login:\n{}",
        std::fs::read_to_string(&agg_log).unwrap()
    );
    drop(agg);

    // Every log, and the admin config view, searched for every secret. The
    // files that hold the secrets show the search finds them.
    let secrets: Vec<(String, String)> = [
        forms("SASL password", SASL_PASSWORD),
        forms("admin token", ADMIN_TOKEN),
        forms("storage key", &storage_key),
    ]
    .concat();
    assert!(
        std::fs::read_to_string(&password_file)
            .unwrap()
            .contains(SASL_PASSWORD)
    );
    assert!(
        std::fs::read_to_string(&token_file)
            .unwrap()
            .contains(ADMIN_TOKEN)
    );
    assert!(
        std::fs::read_to_string(&props)
            .unwrap()
            .contains(SASL_PASSWORD)
    );
    let logs = [
        ("edge log", edge.log()),
        ("tail log", tail_text),
        ("aggregate log", std::fs::read_to_string(&agg_log).unwrap()),
        ("GET /admin/config", view),
    ];
    for (what, text) in &logs {
        assert!(!text.is_empty(), "{what} is empty");
        for (name, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "the {name} is in the {what}"
            );
        }
    }
}
