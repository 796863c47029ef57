//! Kafka traffic encrypted and authenticated: the edge's producer and every
//! backend command that talks to Kafka (`tail`, `aggregate`, `backup`,
//! `replay`) against a real TLS endpoint (socat/OpenSSL in front of Tansu,
//! which advertises only the TLS port), with server-authenticated and mutual
//! TLS; and the failures an operator must see clearly: a wrong CA, a missing
//! client certificate, a readable secret file.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_tests::kafka_tls::{ClientAuth, TlsBroker};
use edge_tests::*;

const TOPIC: &str = "tls-events";
const DLQ: &str = "tls-events.dlq";
const REPLAYED: &str = "tls-replayed";
const EVENTS: usize = 12;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn post_event(edge: &Edge, n: usize) -> u16 {
    browser()
        .post(format!("http://{}/api/event", edge.ports.http))
        .header("host", "site1.example")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"name":"pageview","url":"https://site1.example/tls/{n}"}}"#
        ))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An edge in `dir` serving `s1` over plain HTTP, producing to `brokers`
/// with `kafka_tables` (`[kafka.tls]`, `[kafka.sasl]`, …) appended.
fn config(dir: &Path, key: &BackendKey, brokers: &str, kafka_tables: &str) -> EdgeUnderTest {
    EdgeUnderTest::new(dir, brokers, TOPIC, key)
        .without_https()
        .site("s1", &["site1.example"])
        .raw(kafka_tables)
}

fn backend(args: &[&str]) -> Command {
    let mut c = Command::new(bin("edge-backend"));
    c.args(args).env("NO_COLOR", "1");
    c
}

fn run_ok(mut c: Command, what: &str) -> (String, String) {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    (stdout, stderr)
}

fn kill(child: &mut Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// `tail` over TLS until `count` events; returns the decrypted JSON lines.
fn tail(
    broker: &TlsBroker,
    topic: &str,
    key: &BackendKey,
    props: &Path,
    count: usize,
) -> Vec<String> {
    let mut c = backend(&["tail", "--brokers", &broker.addr, "--topic", topic]);
    c.args(["--group", &format!("tail-{topic}"), "--keys"])
        .arg(&key.private_key_path)
        .args([
            "--count",
            &count.to_string(),
            "--idle-timeout-seconds",
            "30",
        ])
        .arg("--properties-file")
        .arg(props);
    let (stdout, stderr) = run_ok(c, "tail");
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), count, "tail printed:\n{stdout}\n{stderr}");
    lines
}

/// The edge produces over TLS; `tail`, `aggregate`, `backup` consume over
/// TLS, `replay` produces over TLS, each with `--properties-file`.
async fn everything_over_tls(client_auth: ClientAuth) {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = TlsBroker::start(&d.join("pki"), client_auth);
    for t in [TOPIC, DLQ, REPLAYED] {
        broker.create_topic(t, 1).await;
    }
    let key = BackendKey::generate(&d.join("keys"));
    let edge = config(d, &key, &broker.addr, &broker.edge_tls_toml())
        .start()
        .await;
    let started = now_ms();
    for n in 0..EVENTS {
        assert_eq!(post_event(&edge, n).await, 202, "{}", edge.log());
    }
    let props = d.join("kafka.properties");
    broker.write_properties_file(&props);

    // tail: every event decrypts.
    let lines = tail(&broker, TOPIC, &key, &props, EVENTS);
    assert!(lines.iter().all(|l| l.contains("pageview")), "{lines:?}");

    // aggregate (SQLite) counts every event once.
    let agg_dir = d.join("agg");
    let agg_log = d.join("aggregate.log");
    let mut agg = backend(&["aggregate", "--brokers", &broker.addr, "--topic", TOPIC])
        .args(["--dlq-topic", DLQ, "--keys"])
        .arg(&key.private_key_path)
        .arg("--data-dir")
        .arg(&agg_dir)
        .arg("--properties-file")
        .arg(&props)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agg_log).unwrap())
        .spawn()
        .unwrap();
    let from = (started - started.rem_euclid(3_600_000)).to_string();
    let to = (now_ms() + 2 * 3_600_000).to_string();
    let pageviews = || -> i64 {
        let out = backend(&["stats", "--site", "s1", "--bucket", "hour"])
            .args(["--from", &from, "--to", &to])
            .arg("--data-dir")
            .arg(&agg_dir)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["totals"]["pageviews"].as_i64())
            .unwrap_or(0)
    };
    assert_eventually!(
        pageviews() == EVENTS as i64,
        Duration::from_secs(60),
        "aggregate over TLS did not count {EVENTS} pageviews (got {}):\n{}",
        pageviews(),
        std::fs::read_to_string(&agg_log).unwrap_or_default()
    );
    kill(&mut agg, "-TERM");
    assert!(agg.wait().unwrap().success(), "aggregate exit");

    // backup stores every record; verify agrees.
    let store = d.join("backup-store");
    let backup_log = d.join("backup.log");
    let mut backup = backend(&["backup", "--brokers", &broker.addr, "--topic", TOPIC])
        .args(["--window-seconds", "60", "--data-dir"])
        .arg(&store)
        .arg("--properties-file")
        .arg(&props)
        .env("RUST_LOG", "edge_backend=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&backup_log).unwrap())
        .spawn()
        .unwrap();
    assert_eventually!(
        std::fs::read_to_string(&backup_log)
            .unwrap_or_default()
            .contains(&format!("consumed={EVENTS} ")),
        Duration::from_secs(60),
        "backup over TLS did not consume {EVENTS} records:\n{}",
        std::fs::read_to_string(&backup_log).unwrap_or_default()
    );
    kill(&mut backup, "-TERM");
    assert!(backup.wait().unwrap().success(), "backup exit");
    let mut verify = backend(&["verify", "--data-dir"]);
    verify.arg(&store);
    let (out, _) = run_ok(verify, "verify");
    assert!(out.contains(&format!("{EVENTS} records")), "{out}");

    // replay publishes over TLS; what it published decrypts.
    let mut replay = backend(&["replay", "--brokers", &broker.addr]);
    replay
        .args(["--source-topic", TOPIC, "--topic", REPLAYED, "--data-dir"])
        .arg(&store)
        .arg("--properties-file")
        .arg(&props);
    let (_, err) = run_ok(replay, "replay");
    assert!(
        err.contains(&format!("{EVENTS} records published")),
        "{err}"
    );
    tail(&broker, REPLAYED, &key, &props, EVENTS);

    // Nothing secret in the edge's log.
    let key_pem = std::fs::read_to_string(&broker.pki.client_key).unwrap();
    let log = edge.log();
    assert!(!log.contains(key_pem.lines().nth(1).unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_and_every_backend_command_work_over_server_authenticated_tls() {
    everything_over_tls(ClientAuth::None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_and_every_backend_command_work_over_mutual_tls() {
    everything_over_tls(ClientAuth::Required).await;
}

/// Sends one event: it is accepted (202) and waits in the durable spool.
async fn assert_event_waits_in_spool(edge: &Edge) {
    let r = browser()
        .post(format!("http://{}/api/event", edge.ports.http))
        .header("host", "site1.example")
        .header("content-type", "application/json")
        .body(r#"{"name":"pageview","url":"https://site1.example/"}"#)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eventually!(
        edge.metric("edge_spool_records", &[]).await >= 1.0,
        Duration::from_secs(10),
        "the accepted event is not waiting in the spool"
    );
}

/// Waits until the edge's log shows a Kafka client error, then checks it is
/// not ready (the broker refused its TLS or credentials), and that an event
/// sent anyway is accepted into the durable spool and waits there, not lost.
async fn assert_unready_with_error(edge: &Edge, expect_in_log: &[&str]) -> String {
    assert_eventually!(
        {
            let log = edge.log();
            log.contains("kafka client error") && expect_in_log.iter().all(|n| log.contains(n))
        },
        Duration::from_secs(30),
        "the log lacks a kafka client error or one of {expect_in_log:?}:\n{}",
        edge.log()
    );
    let log = edge.log();
    let (status, body) = edge.readyz().await.unwrap();
    assert_eq!(status, 503, "{body}\n{log}");
    assert_event_waits_in_spool(edge).await;
    // Still not ready after the failed deliveries, and the errors are counted.
    let (status, body) = edge.readyz().await.unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("refuses this edge's connection settings"),
        "{body}"
    );
    assert!(edge.metric("edge_kafka_client_errors_total", &[]).await > 0.0);
    assert_eq!(edge.metric("edge_kafka_ready", &[]).await, 0.0);
    log
}

/// Waits until the log shows the broker trouble, then checks that an event
/// is accepted into the spool and waits there while `edge_kafka_ready` is 0.
async fn assert_broker_down_but_spooling(edge: &Edge, expect_in_log: &[&str]) {
    assert_eventually!(
        expect_in_log.iter().all(|n| edge.log().contains(n)),
        Duration::from_secs(30),
        "the log lacks one of {expect_in_log:?}:\n{}",
        edge.log()
    );
    assert_event_waits_in_spool(edge).await;
    assert!(edge.metric("edge_kafka_client_errors_total", &[]).await > 0.0);
    assert_eq!(edge.metric("edge_kafka_ready", &[]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_certificate_from_another_ca_keeps_the_edge_unready_with_a_clear_error() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = TlsBroker::start(&d.join("pki"), ClientAuth::None);
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&d.join("keys"));
    let tls = format!(
        "[kafka.tls]\nca_file = {:?}\n",
        broker.pki.wrong_ca.display().to_string()
    );
    let edge = config(d, &key, &broker.addr, &tls).start_unready().await;
    assert_unready_with_error(&edge, &["certificate verify failed"]).await;
    assert!(
        edge.metric("edge_kafka_client_errors_total", &[("kind", "tls")])
            .await
            > 0.0
    );

    // A backend consumer with the wrong CA says why it gets nothing.
    let props = d.join("wrong.properties");
    let text = format!(
        "security.protocol=ssl\nssl.ca.location={}\n",
        broker.pki.wrong_ca.display()
    );
    std::fs::write(&props, text).unwrap();
    std::fs::set_permissions(&props, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = backend(&[
        "tail",
        "--brokers",
        &broker.addr,
        "--topic",
        TOPIC,
        "--keys",
    ])
    .arg(&key.private_key_path)
    .args([
        "--count",
        "1",
        "--idle-timeout-seconds",
        "3",
        "--properties-file",
    ])
    .arg(&props)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_without_a_client_certificate_is_refused_and_the_edge_stays_unready() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = TlsBroker::start(&d.join("pki"), ClientAuth::Required);
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&d.join("keys"));
    // Trusts the right CA but has no client certificate.
    let tls = format!(
        "[kafka.tls]\nca_file = {:?}\n",
        broker.pki.ca.display().to_string()
    );
    let edge = config(d, &key, &broker.addr, &tls).start_unready().await;
    assert_unready_with_error(&edge, &[&broker.addr]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_files_must_be_private_and_are_never_shown() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = BackendKey::generate(&d.join("keys"));
    let secret = "correct-horse-battery-staple";
    let password_file = d.join("sasl.password");
    std::fs::write(&password_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sasl = format!(
        "[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"edge\"\npassword_file = {:?}\n",
        password_file.display().to_string()
    );
    let config_path = d.join("edge.toml");
    let edge_config = config(d, &key, "127.0.0.1:1", &sasl);
    edge_config.write();

    // The edge refuses a group/other-readable password file, naming file:line:key.
    let out = Command::new(bin("edge"))
        .arg("validate")
        .arg(&config_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("kafka.sasl.password_file"), "{text}");
    assert!(
        text.contains("mode 644") && text.contains("chmod 600"),
        "{text}"
    );
    assert!(
        text.contains("edge.toml:"),
        "names the config file and line: {text}"
    );
    assert!(!text.contains(secret));

    // 0600 is accepted, and the password is never logged.
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(bin("edge"))
        .arg("validate")
        .arg(&config_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(secret));
    let edge = edge_config.start_unready().await;
    let admin_config = edge.admin_config().await.to_string();
    assert!(!admin_config.contains(secret), "{admin_config}");
    assert_eventually!(
        edge.log().contains("kafka client error"),
        Duration::from_secs(30),
        "no kafka error against a closed port:\n{}",
        edge.log()
    );
    assert!(!edge.log().contains(secret));

    // A backend properties file readable by others is refused, without its content.
    let props = d.join("kafka.properties");
    std::fs::write(&props, format!("sasl.password={secret}\n")).unwrap();
    std::fs::set_permissions(&props, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key_path = key.private_key_path.to_str().unwrap().to_string();
    let unused = d.join("unused").display().to_string();
    for cmd in [
        vec!["tail", "--keys", &key_path],
        vec!["aggregate", "--keys", &key_path, "--data-dir", &unused],
        vec!["backup", "--data-dir", &unused],
        vec!["replay", "--topic", "replayed", "--data-dir", &unused],
    ] {
        let out = backend(&cmd)
            .arg("--properties-file")
            .arg(&props)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?} accepted a 0640 file");
        assert!(
            stderr.contains("mode 640") && stderr.contains("chmod 600"),
            "{cmd:?}: {stderr}"
        );
        assert!(!stderr.contains(secret), "{cmd:?}: {stderr}");
    }
}

/// Tansu 0.6 supports SASL with `--authentication`, but only SCRAM-SHA-256/512
/// (and OAUTHBEARER; PLAIN is not compiled in), and a SCRAM user can only be
/// created over a connection that already authenticated: its in-memory
/// storage starts with no user at all. So a successful SCRAM login cannot be
/// shown against it; this shows that the edge and the backend do perform
/// SCRAM over TLS (`sasl_ssl`), that the broker requires it, and that the
/// refusal is clear, counted, and never shows the password.
#[tokio::test(flavor = "multi_thread")]
async fn scram_over_tls_is_attempted_and_a_refused_login_is_clear_and_keeps_the_password_secret() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = TlsBroker::start_with(&d.join("pki"), ClientAuth::None, &["--authentication"]);
    let key = BackendKey::generate(&d.join("keys"));
    let secret = "s3cret-sasl-password";
    let password_file = d.join("sasl.password");
    std::fs::write(&password_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Without SASL the broker closes every connection right after TLS. To the
    // client that looks like a flapping broker, not a refusal it can name, so
    // the edge stays in rotation and keeps events in its spool; the broker
    // state is what shows it (`edge_kafka_ready` 0, the disconnects logged
    // with the broker address, counted).
    let plain_dir = d.join("no-sasl");
    std::fs::create_dir_all(&plain_dir).unwrap();
    let edge = config(&plain_dir, &key, &broker.addr, &broker.edge_tls_toml())
        .start_unready()
        .await;
    assert_broker_down_but_spooling(&edge, &[&broker.addr]).await;
    drop(edge);

    // With SCRAM-SHA-512 the edge logs in over TLS; the broker refuses the
    // unknown user, and the edge says so without the password.
    let sasl = format!(
        "{}[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"edge\"\npassword_file = {:?}\n",
        broker.edge_tls_toml(),
        password_file.display().to_string()
    );
    let edge = config(d, &key, &broker.addr, &sasl).start_unready().await;
    let log = assert_unready_with_error(&edge, &["SASL SCRAM authentication failed"]).await;
    assert!(
        edge.metric(
            "edge_kafka_client_errors_total",
            &[("kind", "authentication")]
        )
        .await
            > 0.0
    );
    assert!(log.contains("sasl_ssl://"), "{log}");
    assert!(!log.contains(secret));

    // The backend does the same with the password from its 0600 properties file.
    let file = d.join("sasl.properties");
    let mut props = broker.client_properties();
    props.retain(|(k, _)| k != "security.protocol");
    props.extend([
        ("security.protocol".to_string(), "sasl_ssl".to_string()),
        ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
        ("sasl.username".to_string(), "edge".to_string()),
        ("sasl.password".to_string(), secret.to_string()),
    ]);
    let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = backend(&[
        "tail",
        "--brokers",
        &broker.addr,
        "--topic",
        TOPIC,
        "--keys",
    ])
    .arg(&key.private_key_path)
    .args([
        "--count",
        "1",
        "--idle-timeout-seconds",
        "5",
        "--properties-file",
    ])
    .arg(&file)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SASL SCRAM authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
}
