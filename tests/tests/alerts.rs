//! The Prometheus alert rules shipped in `deploy/prometheus/` (issue 17 §3):
//! `promtool` accepts them and the example scrape config, their unit tests
//! (`edge-alerts.test.yml`) pass, a wrong expectation makes `promtool test
//! rules` fail (so a green run means something), every alert has a unit test
//! in which it fires, and every metric, label and label value the rules use is
//! described in docs/metrics.md, so renaming a metric there breaks this suite
//! until the rules follow.
//!
//! `promtool` comes from Debian's `prometheus` package (scripts/install-deps);
//! when it is missing these tests fail, they do not skip. The last test runs
//! the Prometheus server of the same package against a real edge.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use edge_tests::*;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_yaml_ng::Value;

const RULES: &str = "edge-alerts.yml";
const RULE_TESTS: &str = "edge-alerts.test.yml";
const EXAMPLE_CONFIG: &str = "prometheus.example.yml";

/// Labels Prometheus attaches to every scraped series (target labels), not
/// the edge's own.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
/// Series Prometheus makes itself, not described in docs/metrics.md.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("prometheus")
}

fn metrics_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    let path = deploy_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `promtool ARGS` in `dir`; a missing promtool fails the test.
fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (scripts/install-deps does)"
            )
        })
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every rule of the rules file: (alert name, expression).
fn rules() -> Vec<(String, String)> {
    let doc = yaml(RULES);
    let groups = doc["groups"].as_sequence().expect("groups: a list");
    let mut out = Vec::new();
    for group in groups {
        for rule in group["rules"].as_sequence().expect("rules: a list") {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("a rule names an alert or a record");
            let expr = rule["expr"].as_str().expect("expr: a string");
            out.push((name.to_string(), expr.to_string()));
        }
    }
    out
}

#[test]
fn promtool_accepts_the_rules_and_the_example_config() {
    let dir = deploy_dir();
    let count = rules().len();
    assert!(count >= 20, "only {count} rules");
    let out = promtool(&dir, &["check", "rules", RULES]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{}",
        text(&out)
    );
    // The example prometheus.yml loads the rules file by its relative path;
    // `check config` checks both.
    let out = promtool(&dir, &["check", "config", EXAMPLE_CONFIG]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{}",
        text(&out)
    );
}

#[test]
fn the_rule_unit_tests_pass() {
    let out = promtool(&deploy_dir(), &["test", "rules", RULE_TESTS]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

/// Positive control for the test above: the same promtool, the same rules,
/// and an expectation that is wrong (the tag alert firing while the gauge is
/// 0) must fail, naming the alert.
#[test]
fn a_wrong_expectation_fails_promtool_test_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(deploy_dir().join(RULES), dir.path().join(RULES)).unwrap();
    let wrong = r#"
rule_files: [edge-alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'edge_tag_integrity_mismatch{job="edge",instance="edge-a:9901"}'
        values: '0+0x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: EdgeTagIntegrityMismatch
        exp_alerts:
          - exp_labels: {severity: critical, job: edge, instance: "edge-a:9901"}
"#;
    std::fs::write(dir.path().join("wrong.test.yml"), wrong).unwrap();
    let out = promtool(dir.path(), &["test", "rules", "wrong.test.yml"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("FAILED"), "{said}");
    assert!(said.contains("EdgeTagIntegrityMismatch"), "{said}");
}

#[test]
fn every_alert_has_a_unit_test_in_which_it_fires() {
    let alerts: BTreeSet<String> = rules().into_iter().map(|(name, _)| name).collect();
    let doc = yaml(RULE_TESTS);
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in doc["tests"].as_sequence().expect("tests: a list") {
        for check in case["alert_rule_test"]
            .as_sequence()
            .expect("alert_rule_test")
        {
            let name = check["alertname"].as_str().expect("alertname").to_string();
            // promtool passes an empty expectation for an alert that does
            // not exist at all, so a misspelt name must be caught here.
            assert!(
                alerts.contains(&name),
                "the tests name unknown alert {name}"
            );
            let expected = check["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let untested: Vec<_> = alerts.difference(&firing).collect();
    assert!(
        untested.is_empty(),
        "alerts never seen firing: {untested:?}"
    );
    // Each alert is also checked at a time when it must not fire (pending,
    // resolved, or only its negative-control series present).
    let never_quiet: Vec<_> = alerts.difference(&quiet).collect();
    assert!(
        never_quiet.is_empty(),
        "alerts never checked quiet: {never_quiet:?}"
    );
}

/// The selectors of one PromQL expression.
#[derive(Default)]
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn metric_name(vs: &VectorSelector) -> String {
    vs.name
        .clone()
        .or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        })
        .expect("every selector of the rules names its metric")
}

/// The values a matcher selects: one for `=`, the alternatives of a plain
/// `a|b|c` regex for `=~` (anything fancier is refused, so every value stays
/// checkable against the docs).
fn matched_values(op: &MatchOp, value: &str) -> Vec<String> {
    match op {
        MatchOp::Equal | MatchOp::NotEqual => vec![value.to_string()],
        MatchOp::Re(_) | MatchOp::NotRe(_) => {
            let parts: Vec<String> = value.split('|').map(str::to_string).collect();
            for p in &parts {
                assert!(
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "regex matcher {value:?}: use a plain list of label values a|b|c"
                );
            }
            parts
        }
    }
}

/// The row of `name` in a docs/metrics.md table: the line starting `| \`name\` |`.
fn doc_row<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("| `{name}` |");
    doc.lines().find(|l| l.starts_with(&head))
}

/// What docs/metrics.md does not describe among the metrics, labels and
/// label values of `rules`, and every metric name the rules read.
fn undocumented(rules: &[(String, String)], doc: &str) -> (Vec<String>, BTreeSet<String>) {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (alert, expr) in rules {
        let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{alert}: {e}"));
        let mut selectors = Selectors::default();
        walk_expr(&mut selectors, &parsed).unwrap();
        assert!(!selectors.0.is_empty(), "{alert}: no selector");
        for vs in &selectors.0 {
            let name = metric_name(vs);
            names.insert(name.clone());
            if PROMETHEUS_SERIES.contains(&name.as_str()) {
                continue;
            }
            // A histogram's series are documented under the family's name.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| doc_row(doc, f).is_some())
                .unwrap_or(&name);
            let Some(row) = doc_row(doc, family) else {
                problems.push(format!(
                    "{alert}: metric {name} has no row in docs/metrics.md"
                ));
                continue;
            };
            for m in &vs.matchers.matchers {
                if m.name == "__name__" || TARGET_LABELS.contains(&m.name.as_str()) {
                    continue;
                }
                if !row.contains(&format!("`{}`", m.name)) {
                    problems.push(format!(
                        "{alert}: {name} has no label {} in docs/metrics.md",
                        m.name
                    ));
                }
                for value in matched_values(&m.op, &m.value) {
                    if !doc.contains(&format!("`{value}`")) {
                        problems.push(format!(
                            "{alert}: {name}{{{}={value:?}}}: value not in docs/metrics.md",
                            m.name
                        ));
                    }
                }
            }
        }
    }
    (problems, names)
}

#[test]
fn every_metric_label_and_value_in_the_rules_is_documented() {
    let (problems, names) = undocumented(&rules(), &metrics_doc());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The rules cover the signals issue 17 asks for, by metric.
    for wanted in [
        "edge_spool_oldest_record_age_seconds",
        "edge_spool_bytes",
        "edge_spool_appends_total",
        "edge_tls_certificate_expiry_seconds",
        "edge_acme_names_in_backoff",
        "edge_tag_integrity_mismatch",
        "edge_ratelimit_degraded",
        "edge_requests_total",
        "edge_admin_requests_total",
        "edge_spool_writable",
    ] {
        assert!(names.contains(wanted), "no rule reads {wanted}");
    }
}

/// Positive control for the docs check: a renamed metric, a label the
/// metric does not have and an unknown label value are each reported, and a
/// documented rule is not.
#[test]
fn the_docs_check_reports_unknown_names() {
    let doc = metrics_doc();
    let rule = |alert: &str, expr: &str| (alert.to_string(), expr.to_string());
    let (problems, _) = undocumented(
        &[
            rule("Renamed", "edge_spool_bytez > 0"),
            rule(
                "WrongLabel",
                r#"edge_spool_appends_total{scope="per_ip"} > 0"#,
            ),
            rule(
                "WrongValue",
                r#"rate(edge_spool_appends_total{outcome=~"full|fulll"}[5m]) > 0"#,
            ),
            rule(
                "Fine",
                r#"sum(rate(edge_spool_appends_total{outcome="full", job="edge"}[5m])) > 0"#,
            ),
        ],
        &doc,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("Renamed: metric edge_spool_bytez"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("WrongLabel: edge_spool_appends_total has no label scope"),
        "{problems:#?}"
    );
    assert!(
        problems[2].contains("WrongValue") && problems[2].contains("\"fulll\""),
        "{problems:#?}"
    );
}

/// `GET` a Prometheus API path; the JSON body's `data`.
async fn prometheus_api(addr: &str, path: &str) -> serde_json::Value {
    let Ok(r) = reqwest::get(format!("http://{addr}{path}")).await else {
        return serde_json::Value::Null;
    };
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    body["data"].clone()
}

/// Active alerts as (alertname, state, labels).
async fn alerts(addr: &str) -> Vec<(String, String, serde_json::Value)> {
    let data = prometheus_api(addr, "/api/v1/alerts").await;
    data["alerts"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        a["state"].as_str().unwrap_or("").to_string(),
                        a["labels"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The shipped rules and example scrape config in a real Prometheus, against
/// a real edge: while the broker is gone the spool fills, the first event is
/// refused with 503, and `EdgeSpoolRefusingEvents` fires for that first
/// refusal (its counter series only appears with it), labelled with the
/// edge's job and instance.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_fires_the_spool_alert_for_a_real_edges_first_refusal() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("alerts", 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, "alerts", &key)
        .without_https()
        .site("s1", &["site1.example"])
        .section("spool", "max_bytes = 65536\nsegment_bytes = 16384");
    let ports = config.ports;
    let edge = config.start().await;

    // Prometheus with the example config, pointed at this edge, scraping
    // and evaluating every second.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    std::fs::copy(deploy_dir().join(RULES), prom_dir.join(RULES)).unwrap();
    let example = std::fs::read_to_string(deploy_dir().join(EXAMPLE_CONFIG)).unwrap();
    let backend_addr = format!("127.0.0.1:{}", free_port());
    let prom_config = example
        .replace("127.0.0.1:9901", &ports.admin.to_string())
        .replace("127.0.0.1:9902", &backend_addr)
        .replace("15s", "1s");
    assert!(
        prom_config.contains(&ports.admin.to_string()),
        "{prom_config}"
    );
    std::fs::write(prom_dir.join("prometheus.yml"), prom_config).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(prom_log)
        .spawn()
        .expect("cannot run prometheus: install Debian's `prometheus` package (scripts/install-deps does)");
    let _prometheus = ChildGuard(child);
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Positive control: Prometheus scrapes the edge (through the admin
    // listener's Host check) and the rules see its series.
    let instance = ports.admin.to_string();
    assert_eventually!(
        prometheus_api(&prom_addr, "/api/v1/query?query=edge_spool_writable").await["result"]
            .as_array()
            .is_some_and(|r| r
                .iter()
                .any(|s| s["metric"]["instance"] == instance.as_str()
                    && s["metric"]["job"] == "edge"
                    && s["value"][1] == "1")),
        Duration::from_secs(60),
        "Prometheus never scraped the edge:\n{}",
        prom_log()
    );
    let groups = prometheus_api(&prom_addr, "/api/v1/rules").await["groups"].clone();
    let loaded: usize = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(loaded, rules().len(), "{groups}");
    assert!(
        !alerts(&prom_addr)
            .await
            .iter()
            .any(|(name, _, _)| name == "EdgeSpoolRefusingEvents"),
        "fired before any refusal"
    );

    // The broker goes away; events fill the spool until the first 503.
    drop(broker);
    let client = browser();
    let mut n = 0u64;
    loop {
        let r = client
            .post(format!("http://{}/api/event", ports.http))
            .header("host", "site1.example")
            .body(format!(
                r#"{{"name":"pageview","url":"https://site1.example/p/{n}"}}"#
            ))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => {}
            503 => break,
            other => panic!("unexpected status {other}"),
        }
        n += 1;
        assert!(n < 5_000, "the spool never filled");
    }
    assert_eq!(
        edge.metric("edge_spool_appends_total", &[("outcome", "full")])
            .await,
        1.0
    );
    assert_eventually!(
        alerts(&prom_addr)
            .await
            .iter()
            .any(|(name, state, labels)| {
                name == "EdgeSpoolRefusingEvents"
                    && state == "firing"
                    && labels["outcome"] == "full"
                    && labels["job"] == "edge"
                    && labels["instance"] == instance.as_str()
                    && labels["severity"] == "critical"
            }),
        Duration::from_secs(60),
        "EdgeSpoolRefusingEvents did not fire: {:?}\n{}",
        alerts(&prom_addr).await,
        prom_log()
    );
}
