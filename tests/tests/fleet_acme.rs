//! Issue 16, shared certificates: three real `edge` processes on 127.0.0.2,
//! .3 and .4 (same ports), one pebble, one PostgreSQL schema (`[acme.shared]`).
//!
//! * 30 names configured in one reload on all three: exactly 30 orders reach
//!   pebble (its own log), and every edge serves a certificate for every
//!   name that verifies against pebble's root.
//! * pebble's DNS sends each name's validation to one edge chosen in turn,
//!   whichever edge placed the order: names validated by an edge that did
//!   not order them prove the challenge responses travel through the store.
//! * On-demand approvals are shared: a new on-demand name asked for on one
//!   edge is not asked again by the others (the `ask` endpoint is called
//!   once fleet-wide), is ordered once, and is served by all three.
//! * A storage-key rotation by rolling reload: the first edge reloaded
//!   re-seals every shared row; the others, still on the old key, skip the
//!   re-sealed rows and keep serving; nothing is ordered.
//! * `kill -9` of the edge holding a name's lease mid-order: another edge
//!   completes that order once the (3 s) lease expired, with a greater fence.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_tests::ask::AskServer;
use edge_tests::pebble::{Pebble, tls_connect, write_storage_key};
use edge_tests::*;
use rustls::pki_types::CertificateDer;
use sqlx::{PgPool, Row};

const TOPIC: &str = "fleet-acme-events";
const PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const IPS: [[u8; 4]; 3] = [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]];

/// Under the wildcard the sites cover: on-demand names, approved by the
/// fleet's `ask` endpoint when they start with `ok`.
const ON_DEMAND: &str = "*.od.fleet.example";

struct Fleet {
    pebble: Pebble,
    ask: AskServer,
    edges: Vec<Option<Edge>>,
    bases: Vec<EdgeUnderTest>,
    storage_key: PathBuf,
    schema: String,
    pg: PgPool,
}

fn ip_text(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

impl Fleet {
    fn config(&self, i: usize, names: &[String], challenges: &str) -> EdgeUnderTest {
        let mut domains = vec!["localhost", ON_DEMAND];
        domains.extend(names.iter().map(String::as_str));
        let acme_extra = format!(
            "challenges = [{challenges:?}]\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\n\
             max_concurrent_orders = 8\n\n[acme.shared]\npostgres_url = {PG:?}\n\
             schema = {schema:?}\nlease_seconds = 3\npoll_seconds = 2\n\n\
             [acme.on_demand]\nask_url = \"http://127.0.0.1:{ask}/ask\"\nask_cache_seconds = 600\n",
            schema = self.schema,
            ask = self.ask.port,
        );
        self.bases[i]
            .clone()
            .site("s", &domains)
            .raw(&self.pebble.acme_table(&self.storage_key, &acme_extra))
    }

    fn edge(&self, i: usize) -> &Edge {
        self.edges[i].as_ref().unwrap()
    }

    /// The sum of one metric over the edges in `edges`.
    async fn metric_sum(
        &self,
        edges: std::ops::Range<usize>,
        name: &str,
        labels: &[(&str, &str)],
    ) -> f64 {
        let mut sum = 0.0;
        for i in edges {
            sum += self.edge(i).metric(name, labels).await;
        }
        sum
    }

    /// Rewrites every live edge's config and reloads them all at once.
    async fn reload_all(&self, names: &[String], challenges: &str) {
        for i in 0..3 {
            self.config(i, names, challenges).write();
        }
        // All three at once, as one operator's rollout would.
        let (a, b, c) = tokio::join!(
            self.edge(0).reload(),
            self.edge(1).reload(),
            self.edge(2).reload()
        );
        for (status, body) in [a, b, c] {
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Waits until edge `i` serves `name` a chain verified by pebble's root.
    async fn wait_served(&self, i: usize, name: &str, root: &CertificateDer<'static>) -> String {
        let addr = SocketAddr::new(self.https(i).ip(), self.https(i).port());
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match tls_connect(addr, name, root).await {
                Ok(served) => return served.serial(),
                Err(e) if Instant::now() > deadline => panic!(
                    "edge {i} serves no valid certificate for {name}: {e}\nedge log:\n{}",
                    self.edge(i).log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn https(&self, i: usize) -> SocketAddr {
        self.bases[i].ports.https
    }

    /// Names edge `i` logged an order for.
    fn ordered_by(&self, i: usize) -> Vec<String> {
        self.edge(i)
            .log()
            .lines()
            .filter(|l| l.contains("acme: ordering a certificate"))
            .filter_map(|l| {
                let at = l.find("name=")? + 5;
                let rest = &l[at..];
                let end = rest.find([' ', ',']).unwrap_or(rest.len());
                Some(rest[..end].trim_matches('"').to_string())
            })
            .collect()
    }
}

async fn start_fleet(dir: &Path, broker: &Broker) -> Fleet {
    let key = BackendKey::generate(&dir.join("keys"));
    let http = free_port();
    let https = free_port();
    let shared_ports = EdgePorts {
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        https: SocketAddr::from(([127, 0, 0, 1], https)),
        admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    let pebble = Pebble::start(dir, &shared_ports, 3600);
    let storage_key = dir.join("storage.key");
    write_storage_key(&storage_key);
    let bases: Vec<EdgeUnderTest> = IPS
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let edge_dir = dir.join(format!("edge{i}"));
            std::fs::create_dir_all(&edge_dir).unwrap();
            let ports = EdgePorts {
                http: SocketAddr::from((*ip, http)),
                https: SocketAddr::from((*ip, https)),
                admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            };
            EdgeUnderTest::new(&edge_dir, &broker.addr, TOPIC, &key)
                .ports(ports)
                .plain_http("redirect")
        })
        .collect();
    let pg = PgPool::connect(PG).await.unwrap();
    let suffix: u64 = ring_random();
    let mut fleet = Fleet {
        pebble,
        ask: AskServer::start(dir),
        edges: Vec::new(),
        bases,
        storage_key,
        schema: format!("fleet_acme_{suffix:x}"),
        pg,
    };
    for i in 0..3 {
        let edge = fleet.config(i, &[], "http-01").start().await;
        fleet.edges.push(Some(edge));
    }
    fleet
}

fn ring_random() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_edges_one_order_per_name_and_takeover_after_kill() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let mut fleet = start_fleet(dir.path(), &broker).await;
    let root = fleet.pebble.root().await;

    // 30 names; pebble validates name k at edge k mod 3.
    let names: Vec<String> = (0..30).map(|k| format!("n{k}.fleet.example")).collect();
    let validator: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(k, n)| (n.clone(), k % 3))
        .collect();
    for (name, i) in &validator {
        fleet.pebble.point(name, &ip_text(IPS[*i])).await;
    }
    fleet.reload_all(&names, "http-01").await;

    for name in &names {
        let serials: HashSet<String> = {
            let mut s = HashSet::new();
            for i in 0..3 {
                s.insert(fleet.wait_served(i, name, &root).await);
            }
            s
        };
        assert_eq!(
            serials.len(),
            1,
            "{name}: every edge serves the one certificate"
        );
    }
    assert_eq!(
        fleet.pebble.orders(),
        30,
        "exactly one order per name reached pebble"
    );
    let mut orderer: HashMap<String, usize> = HashMap::new();
    for i in 0..3 {
        for name in fleet.ordered_by(i) {
            assert!(
                orderer.insert(name.clone(), i).is_none(),
                "{name} ordered by two edges"
            );
        }
    }
    assert_eq!(orderer.len(), 30, "{orderer:?}");
    let validated_elsewhere = names
        .iter()
        .filter(|n| orderer[*n] != validator[*n])
        .count();
    assert!(
        validated_elsewhere > 0,
        "no name was validated by an edge that did not order it; the test proves nothing"
    );
    let held_elsewhere = fleet
        .metric_sum(
            0..3,
            "edge_acme_shared_leases_total",
            &[("outcome", "held_elsewhere")],
        )
        .await;
    assert!(
        held_elsewhere > 0.0,
        "the edges never contended for a lease"
    );
    eprintln!(
        "orders per edge: {:?}; validated by another edge than the orderer: {validated_elsewhere}/30; \
         leases found held elsewhere: {held_elsewhere}",
        (0..3)
            .map(|i| fleet.ordered_by(i).len())
            .collect::<Vec<_>>()
    );
    // One ACME account for the fleet: every edge uses the one stored first.
    let accounts: HashSet<String> = (0..3)
        .map(|i| {
            let log = fleet.edge(i).log();
            let line = log
                .lines()
                .rfind(|l| l.contains("acme: account ready"))
                .unwrap_or_else(|| panic!("edge {i} has no account:\n{log}"))
                .to_string();
            let at = line.find("account=").unwrap() + 8;
            line[at..].split_whitespace().next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        accounts.len(),
        1,
        "the edges use different accounts: {accounts:?}"
    );
    let issued: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.issuance",
        fleet.schema
    )))
    .fetch_one(&fleet.pg)
    .await
    .unwrap()
    .get(0);
    assert_eq!(
        issued, 30,
        "the fleet-wide issuance limit counted each order once"
    );

    on_demand_is_asked_once_fleet_wide(&fleet, &root).await;
    let mut served = names.clone();
    served.push("ok1.od.fleet.example".into());
    storage_key_rotates_with_a_rolling_reload(&mut fleet, &names, &served, &root).await;

    // Kill -9 the edge holding a lease mid-order (its order reached pebble).
    let mut all = names.clone();
    all.push("k.fleet.example".into());
    let orders_before = fleet.pebble.orders();
    fleet.reload_all(&all, "http-01").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (victim, killed_fence) = loop {
        assert!(Instant::now() < deadline, "no edge took the lease on k");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT holder, fence FROM {}.leases WHERE name = 'k.fleet.example' AND expires_at > now()",
            fleet.schema
        )))
        .fetch_optional(&fleet.pg)
        .await
        .unwrap();
        if let Some(row) = row
            && fleet.pebble.orders() > orders_before
        {
            let holder: String = row.get(0);
            let pid: u32 = holder.split('/').nth(1).unwrap().parse().unwrap();
            let victim = (0..3).find(|i| fleet.edge(*i).pid() == pid).unwrap();
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            break (victim, row.get::<i64, _>(1));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed = fleet.edges[victim].take().unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    fleet
        .pebble
        .point("k.fleet.example", &ip_text(IPS[survivors[0]]))
        .await;
    let stored_fence = |fleet: &Fleet| {
        let q = format!(
            "SELECT fence FROM {}.certificates WHERE name = 'k.fleet.example'",
            fleet.schema
        );
        let pg = fleet.pg.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(q))
                .fetch_optional(&pg)
                .await
                .unwrap()
                .map(|r| r.get::<i64, _>(0))
        }
    };
    for i in &survivors {
        fleet.wait_served(*i, "k.fleet.example", &root).await;
    }
    let fence = stored_fence(&fleet).await.expect("k stored");
    assert!(
        fence > killed_fence,
        "k was stored under a later lease ({fence}) than the killed edge's ({killed_fence}); \
         killed edge log:\n{}",
        killed.log()
    );
    assert_eq!(
        fleet.pebble.orders(),
        orders_before + 2,
        "the killed edge's order and the takeover's, nothing else"
    );
    drop(killed);

    // PostgreSQL unreachable: a survivor restarted against a dead store
    // still serves every name, from the disk copies of what it received.
    let restarted = survivors[1];
    let certs_dir = dir.path().join(format!("edge{restarted}/data/acme/certs"));
    assert_eventually!(
        std::fs::read_dir(&certs_dir).map_or(0, |d| d
            .filter(|e| e
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
            .count())
            == all.len() + 1,
        Duration::from_secs(30),
        "edge {restarted} did not copy every certificate (and the on-demand one) to its disk store"
    );
    fleet.edges[restarted]
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    let dead_store = fleet
        .config(restarted, &all, "http-01")
        .render()
        .replace(PG, "postgres://postgres@127.0.0.1:1/postgres");
    let edge_dir = dir.path().join(format!("edge{restarted}"));
    fleet.edges[restarted] =
        Some(Edge::start(&edge_dir, fleet.bases[restarted].ports, &dead_store).await);
    for name in &all {
        fleet.wait_served(restarted, name, &root).await;
    }
    assert_eq!(
        fleet
            .edge(restarted)
            .metric("edge_acme_shared_store_up", &[])
            .await,
        0.0
    );
    assert_eq!(
        fleet.pebble.orders(),
        orders_before + 2,
        "and it ordered nothing"
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {} CASCADE",
        fleet.schema
    )))
    .execute(&fleet.pg)
    .await
    .unwrap();
}

/// A new on-demand name reaches edge 0 first, then edges 1 and 2 while no
/// certificate exists yet (the test holds the name's lease, so nobody can
/// order it): the `ask` endpoint is called once, by edge 0; the others take
/// the fleet's approval from the store. Then the lease is released: one
/// order, and all three serve the certificate.
async fn on_demand_is_asked_once_fleet_wide(fleet: &Fleet, root: &CertificateDer<'static>) {
    let name = "ok1.od.fleet.example";
    let orders_before = fleet.pebble.orders();
    fleet.pebble.point(name, &ip_text(IPS[0])).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {s}.leases (name, holder, fence, expires_at) \
         VALUES ($1, 'test/0/blocker', nextval('{s}.lease_fences'), now() + interval '10 minutes')",
        s = fleet.schema
    )))
    .bind(name)
    .execute(&fleet.pg)
    .await
    .unwrap();
    let wants = |i: usize| async move {
        fleet.edge(i).admin_certs().await["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == name)
    };
    for i in 0..3 {
        let addr = fleet.https(i);
        assert!(
            tls_connect(addr, name, root).await.is_err(),
            "edge {i} served {name} before anyone could order it"
        );
        assert_eventually!(
            wants(i).await,
            Duration::from_secs(30),
            "edge {i} never wanted {name}:\n{}",
            fleet.edge(i).log()
        );
        if i == 0 {
            assert_eq!(fleet.ask.calls(name), 1, "edge 0 asked");
            // Edge 0 writes its approval in the background; the next
            // handshakes come after it (simultaneous first handshakes on
            // several edges may each ask).
            let approved = format!("SELECT 1 FROM {}.approvals WHERE name = $1", fleet.schema);
            assert_eventually!(
                sqlx::query(sqlx::AssertSqlSafe(approved.clone()))
                    .bind(name)
                    .fetch_optional(&fleet.pg)
                    .await
                    .unwrap()
                    .is_some(),
                Duration::from_secs(30),
                "edge 0 never stored its approval"
            );
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {}.leases SET expires_at = '-infinity' WHERE name = $1",
        fleet.schema
    )))
    .bind(name)
    .execute(&fleet.pg)
    .await
    .unwrap();
    let serials: HashSet<String> = {
        let mut s = HashSet::new();
        for i in 0..3 {
            s.insert(fleet.wait_served(i, name, root).await);
        }
        s
    };
    assert_eq!(serials.len(), 1, "every edge serves the one certificate");
    assert_eq!(
        fleet.ask.names(),
        vec![name.to_string()],
        "the ask endpoint was called once fleet-wide"
    );
    assert_eq!(
        fleet.pebble.orders(),
        orders_before + 1,
        "one order for the on-demand name"
    );
    let approvals = "edge_acme_shared_approvals_total";
    let used = fleet
        .metric_sum(1..3, approvals, &[("outcome", "used")])
        .await
        + fleet
            .metric_sum(1..3, approvals, &[("outcome", "received")])
            .await;
    assert!(used >= 2.0, "edges 1 and 2 took the fleet's approval");
}

/// A new key file; each edge's configuration points at it and the edges
/// are reloaded one by one (a reload of an unchanged file is a no-op).
async fn storage_key_rotates_with_a_rolling_reload(
    fleet: &mut Fleet,
    names: &[String],
    served: &[String],
    root: &CertificateDer<'static>,
) {
    let checks = format!(
        "SELECT DISTINCT key_check FROM {}.certificates",
        fleet.schema
    );
    let key_checks = || async {
        sqlx::query(sqlx::AssertSqlSafe(checks.clone()))
            .fetch_all(&fleet.pg)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<String>>()
    };
    let old = key_checks().await;
    assert_eq!(old.len(), 1, "every row records the one key: {old:?}");
    let orders_before = fleet.pebble.orders();
    let new_key = fleet.storage_key.with_file_name("storage-rotated.key");
    write_storage_key(&new_key);
    fleet.storage_key = new_key;
    fleet.config(0, names, "http-01").write();
    let (status, body) = fleet.edge(0).reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        {
            let now = key_checks().await;
            now.len() == 1 && now != old
        },
        Duration::from_secs(30),
        "edge 0 did not re-seal every shared row: {:?}\n{}",
        key_checks().await,
        fleet.edge(0).log()
    );
    let resealed = fleet
        .edge(0)
        .metric(
            "edge_acme_shared_resealed_total",
            &[("outcome", "resealed")],
        )
        .await;
    assert_eq!(
        resealed,
        served.len() as f64 + 1.0,
        "every certificate and the account"
    );
    // Edges 1 and 2, still on the old key, hear of the re-sealed rows,
    // skip them and keep serving.
    for i in 1..3 {
        assert_eventually!(
            fleet
                .edge(i)
                .metric("edge_acme_shared_other_key_total", &[])
                .await
                > 0.0,
            Duration::from_secs(30),
            "edge {i} did not skip the re-sealed rows"
        );
    }
    for i in 0..3 {
        if i > 0 {
            fleet.config(i, names, "http-01").write();
            let (status, body) = fleet.edge(i).reload().await;
            assert_eq!(status, 200, "{body}");
        }
        for name in served {
            fleet.wait_served(i, name, root).await;
        }
    }
    assert_eq!(
        fleet.pebble.orders(),
        orders_before,
        "a rotation orders nothing"
    );
}
