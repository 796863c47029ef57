//! One builder for an edge under test: its config is data (sites, certificates,
//! listeners, Kafka, named sections), rendered to TOML when the edge starts or
//! reloads. Tests change a field and write the config again instead of
//! editing config text.

use std::path::{Path, PathBuf};

use crate::{BackendKey, Broker, Edge, EdgeOptions, EdgePorts, init_crypto};

/// One `[[sites]]` entry.
#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub domains: Vec<String>,
    /// Further `key = value` lines of the entry (`bot_action = "tag"`, …).
    pub keys: Vec<String>,
}

/// An edge config under construction, and how to run it.
///
/// `new` gives an edge with HTTPS (when a certificate is added), plain HTTP
/// serving events, and the admin listener, each on a free port; sites,
/// certificates and sections come from the builder methods.
#[derive(Debug, Clone)]
pub struct EdgeUnderTest {
    /// Directory of `edge.toml` and `edge.log`.
    pub dir: PathBuf,
    pub ports: EdgePorts,
    data_dir: PathBuf,
    brokers: String,
    topic: String,
    key_id: String,
    active_key_id: Option<String>,
    public_key: String,
    certs: Vec<(PathBuf, PathBuf)>,
    https: bool,
    plain_http: String,
    pub sites: Vec<Site>,
    linger_ms: u32,
    kafka: Vec<String>,
    admin: Vec<String>,
    /// `(table name, body)`; a name set twice keeps the last body.
    sections: Vec<(String, String)>,
    raw: Vec<String>,
    options: EdgeOptions,
}

impl EdgeUnderTest {
    /// An edge in `dir` producing to `topic` on `brokers`, sealing to `key`.
    pub fn new(dir: &Path, brokers: &str, topic: &str, key: &BackendKey) -> EdgeUnderTest {
        init_crypto();
        EdgeUnderTest {
            dir: dir.to_path_buf(),
            ports: EdgePorts::pick(),
            data_dir: dir.join("data"),
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            key_id: key.key_id.clone(),
            active_key_id: None,
            public_key: key.public_key.clone(),
            certs: Vec::new(),
            https: true,
            plain_http: "events".into(),
            sites: Vec::new(),
            linger_ms: 1,
            kafka: Vec::new(),
            admin: Vec::new(),
            sections: Vec::new(),
            raw: Vec::new(),
            options: EdgeOptions::default(),
        }
    }

    /// Listens on `ports` instead of freshly picked ones.
    pub fn ports(mut self, ports: EdgePorts) -> Self {
        self.ports = ports;
        self
    }

    /// `data_dir` (`dir/data` by default).
    pub fn data_dir(mut self, data_dir: PathBuf) -> Self {
        self.data_dir = data_dir;
        self
    }

    /// Seals to `key` (the only backend key, and the active one).
    pub fn backend_key(mut self, key: &BackendKey) -> Self {
        self.key_id = key.key_id.clone();
        self.public_key = key.public_key.clone();
        self.active_key_id = None;
        self
    }

    /// Adds a site serving `domains`.
    pub fn site(mut self, id: &str, domains: &[&str]) -> Self {
        self.sites.push(Site {
            id: id.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            keys: Vec::new(),
        });
        self
    }

    /// Adds a `key = value` line to site `id`.
    pub fn site_key(mut self, id: &str, line: &str) -> Self {
        self.site_mut(id).keys.push(line.into());
        self
    }

    /// Replaces the domains of site `id`.
    pub fn domains(mut self, id: &str, domains: &[&str]) -> Self {
        self.site_mut(id).domains = domains.iter().map(|d| d.to_string()).collect();
        self
    }

    fn site_mut(&mut self, id: &str) -> &mut Site {
        self.sites
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no site {id:?} in the test config"))
    }

    /// Serves an operator certificate (`[[tls.certificates]]`).
    pub fn cert(mut self, (cert, key): (PathBuf, PathBuf)) -> Self {
        self.certs.push((cert, key));
        self
    }

    /// No HTTPS listener (`listeners.https = ""`).
    pub fn without_https(mut self) -> Self {
        self.https = false;
        self
    }

    /// `listeners.plain_http` (`events` by default).
    pub fn plain_http(mut self, mode: &str) -> Self {
        self.plain_http = mode.into();
        self
    }

    /// `kafka.linger_ms` (1 by default: tests want deliveries at once).
    pub fn linger_ms(mut self, linger_ms: u32) -> Self {
        self.linger_ms = linger_ms;
        self
    }

    /// Adds a line to the `[kafka]` table.
    pub fn kafka(mut self, line: &str) -> Self {
        self.kafka.push(line.into());
        self
    }

    /// Adds a line to the `[admin]` table.
    pub fn admin(mut self, line: &str) -> Self {
        self.admin.push(line.into());
        self
    }

    /// Sets the body of table `[name]` (replacing an earlier one of that name).
    pub fn section(mut self, name: &str, body: &str) -> Self {
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some((_, b)) => *b = body.into(),
            None => self.sections.push((name.into(), body.into())),
        }
        self
    }

    /// Sets `[limits]`.
    pub fn limits(self, body: &str) -> Self {
        self.section("limits", body)
    }

    /// Appends TOML text holding whole tables (e.g. `Pebble::acme_table`).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.into());
        self
    }

    /// Names `id` as `encryption.active_key_id` instead of the backend key's id.
    pub fn active_key_id(mut self, id: &str) -> Self {
        self.active_key_id = Some(id.into());
        self
    }

    /// Runs the edge with `options` (open-file limit, log filter).
    pub fn options(mut self, options: EdgeOptions) -> Self {
        self.options = options;
        self
    }

    /// The config file text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "data_dir = {data:?}\n\n[listeners]\nhttp = \"{http}\"\nhttps = \"{https}\"\nplain_http = {plain:?}\n\n[admin]\nlisten = \"{admin}\"\n",
            data = self.data_dir.display().to_string(),
            http = self.ports.http,
            https = if self.https {
                self.ports.https.to_string()
            } else {
                String::new()
            },
            plain = self.plain_http,
            admin = self.ports.admin
        );
        for line in &self.admin {
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        for (c, k) in &self.certs {
            s.push_str(&format!(
                "[[tls.certificates]]\ncert_file = {:?}\nkey_file = {:?}\n\n",
                c.display().to_string(),
                k.display().to_string()
            ));
        }
        for site in &self.sites {
            let domains: Vec<String> = site.domains.iter().map(|d| format!("{d:?}")).collect();
            s.push_str(&format!(
                "[[sites]]\nid = {:?}\ndomains = [{}]\n",
                site.id,
                domains.join(", ")
            ));
            for line in &site.keys {
                s.push_str(line);
                s.push('\n');
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "[kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\ndelivery_timeout_ms = 3000\nlinger_ms = {linger}\n",
            brokers = self.brokers,
            topic = self.topic,
            linger = self.linger_ms
        ));
        for line in &self.kafka {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str(&format!(
            "\n[encryption]\nactive_key_id = {active:?}\n\n[[encryption.backend_keys]]\nid = {id:?}\npublic_key = {pk:?}\n\n",
            active = self.active_key_id.as_ref().unwrap_or(&self.key_id),
            id = self.key_id,
            pk = self.public_key
        ));
        for (name, body) in &self.sections {
            s.push_str(&format!("[{name}]\n{body}\n\n"));
        }
        for text in &self.raw {
            s.push_str(text);
            s.push('\n');
        }
        s
    }

    /// Writes the config to `dir/edge.toml` (the running edge's file).
    pub fn write(&self) {
        std::fs::write(self.dir.join("edge.toml"), self.render()).unwrap();
    }

    /// Starts the edge and waits until `/readyz` says ready.
    pub async fn start(&self) -> Edge {
        Edge::start_with(&self.dir, self.ports, &self.render(), &self.options).await
    }

    /// Starts the edge and waits only for its admin listener.
    pub async fn start_unready(&self) -> Edge {
        Edge::start_unready(&self.dir, self.ports, &self.render(), &self.options).await
    }
}

/// A broker with `topic` (one partition) and an edge in `dir` serving two
/// sites, `s1` (site1.example) and `s2` (site2.example), with `extra` TOML
/// appended. HTTPS with `cert` when given, else plain HTTP only.
pub async fn two_site_edge(
    dir: tempfile::TempDir,
    topic: &str,
    cert: Option<(PathBuf, PathBuf)>,
    extra: &str,
) -> (tempfile::TempDir, Broker, Edge) {
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let mut config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .site("s1", &["site1.example"])
        .site("s2", &["site2.example"])
        .raw(extra);
    config = match cert {
        Some(cert) => config.cert(cert),
        None => config.without_https(),
    };
    let edge = config.start().await;
    (dir, broker, edge)
}
