//! The real `edge` binary as a child process: start (ready or not), read its
//! log and metrics, reload, terminate.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{admin_post, bin, free_port, parse_metric};

/// Addresses an edge process listens on.
#[derive(Debug, Clone, Copy)]
pub struct EdgePorts {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl EdgePorts {
    pub fn pick() -> EdgePorts {
        Self::pick_on(IpAddr::from([127, 0, 0, 1]))
    }

    /// Free ports on `ip`, e.g. a loopback alias (127.0.0.2, …) so that a
    /// fleet of edges on one host has one address per edge.
    pub fn pick_on(ip: IpAddr) -> EdgePorts {
        let at = |p: u16| SocketAddr::new(ip, p);
        EdgePorts {
            http: at(free_port()),
            https: at(free_port()),
            admin: at(free_port()),
        }
    }
}

/// How to run an edge beyond its config.
#[derive(Debug, Clone, Default)]
pub struct EdgeOptions {
    /// Run under `ulimit -n N` (soft and hard open-file limit), as a
    /// default systemd unit would.
    pub open_files_limit: Option<u64>,
    /// `RUST_LOG` for the edge ([`DEFAULT_RUST_LOG`] otherwise).
    pub rust_log: Option<String>,
}

/// The log filter an edge under test runs with unless told otherwise.
pub const DEFAULT_RUST_LOG: &str = "info,pingora_core=warn,pingora_proxy=warn";

/// The real `edge` binary running `edge run --config FILE`.
pub struct Edge {
    child: Option<Child>,
    pub ports: EdgePorts,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Bearer token for the admin API, once `admin.token_file` is configured.
    pub admin_token: Option<String>,
}

impl Edge {
    /// Writes `config` to `dir/edge.toml`, starts the edge and waits until `/readyz` says ready.
    pub async fn start(dir: &Path, ports: EdgePorts, config: &str) -> Edge {
        Self::start_with(dir, ports, config, &EdgeOptions::default()).await
    }

    /// Like [`Edge::start`], with `options`.
    pub async fn start_with(
        dir: &Path,
        ports: EdgePorts,
        config: &str,
        options: &EdgeOptions,
    ) -> Edge {
        let mut edge = Self::spawn(dir, ports, config, options);
        edge.wait_ready(Duration::from_secs(30)).await;
        edge
    }

    /// Starts the edge with `config` in `dir` without waiting for `/readyz`
    /// (for brokers it must not reach). Waits until the admin listener answers.
    pub async fn start_unready(
        dir: &Path,
        ports: EdgePorts,
        config: &str,
        options: &EdgeOptions,
    ) -> Edge {
        let mut edge = Self::spawn(dir, ports, config, options);
        let deadline = Instant::now() + Duration::from_secs(30);
        while edge.readyz().await.is_none() {
            edge.assert_running();
            assert!(
                Instant::now() < deadline,
                "edge admin listener not up:\n{}",
                edge.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        edge
    }

    fn spawn(dir: &Path, ports: EdgePorts, config: &str, options: &EdgeOptions) -> Edge {
        let config_path = dir.join("edge.toml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join("edge.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = match options.open_files_limit {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin("edge"));
                c
            }
            None => Command::new(bin("edge")),
        };
        let rust_log = options.rust_log.as_deref().unwrap_or(DEFAULT_RUST_LOG);
        let child = command
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Edge {
            child: Some(child),
            ports,
            config_path,
            log_path,
            admin_token: None,
        }
    }

    /// `GET` on the admin listener (with the bearer token, when set).
    async fn admin_get(&self, path: &str) -> reqwest::Response {
        let mut r = reqwest::Client::new().get(format!("http://{}{path}", self.ports.admin));
        if let Some(token) = &self.admin_token {
            r = r.bearer_auth(token);
        }
        r.send().await.unwrap()
    }

    /// Panics with the log when the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("edge exited early ({status}):\n{}", self.log());
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if self.readyz().await.is_some_and(|(s, _)| s == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("edge not ready within {timeout:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /readyz`: `(status, body)`, or `None` while the admin listener is down.
    pub async fn readyz(&self) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://{}/readyz", self.ports.admin))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// Process id of the running edge.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The edge's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /metrics` from the admin listener.
    pub async fn metrics(&self) -> String {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// Sum of a metric's samples whose label set contains every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_metric(&self.metrics().await, name, labels)
    }

    /// `GET /admin/config`: the active version and config as JSON.
    pub async fn admin_config(&self) -> serde_json::Value {
        self.admin_get("/admin/config").await.json().await.unwrap()
    }

    /// `GET /admin/certs`: the ACME settings and every managed name.
    pub async fn admin_certs(&self) -> serde_json::Value {
        self.admin_get("/admin/certs").await.json().await.unwrap()
    }

    /// `POST /admin/reload`: (status, JSON body).
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = admin_post(self.ports.admin, "/admin/reload").await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
