//! `edge top`: a live terminal view of a running edge, read from its admin
//! listener and refreshed every second (the anchor is `vector top`):
//! requests and events per site, answers by status class, drops per reason,
//! Kafka and spool state, certificates and TLS handshakes.
//!
//! It only reads: `GET /metrics`, `/readyz`, `/admin/spool` and
//! `/admin/certs`. The admin URL is `--admin`, else `admin.listen` of the
//! edge configuration named by `--config` (with its `admin.token_file`),
//! else `http://127.0.0.1:9901`. The process must have a rustls crypto
//! provider installed (the `edge` binary installs ring) because the HTTP
//! client is built with rustls, although the admin listener is plain HTTP.

pub mod app;
pub mod model;
pub mod samples;
pub mod scrape;
pub mod ui;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// The admin listener's address when neither `--admin` nor `--config` is given.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// Command-line options of `edge top`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Admin listener to read, e.g. `http://127.0.0.1:9901` (default:
    /// `admin.listen` of `--config`, else http://127.0.0.1:9901).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The edge's configuration: its `admin.listen` and `admin.token_file` are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File holding the admin bearer token (default: `admin.token_file` of `--config`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub interval: f64,
}

/// Where to read from, resolved from [`Options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The token file to read, if any.
    pub token_file: Option<PathBuf>,
}

/// Resolves the admin URL and token file: `--admin` and `--token-file`
/// win over the configuration's `admin.listen` and `admin.token_file`.
pub fn resolve(opts: &Options) -> anyhow::Result<Target> {
    let config = match &opts.config {
        Some(path) => Some(
            edge_config::load(path)
                .map_err(|errors| anyhow::anyhow!("{}", errors.to_string().trim_end()))?
                .config
                .admin,
        ),
        None => None,
    };
    let base = match (&opts.admin, &config) {
        (Some(url), _) => normalise_url(url)?,
        (None, Some(admin)) => format!("http://{}", connect_addr(admin.listen)),
        (None, None) => DEFAULT_ADMIN.to_string(),
    };
    let token_file = opts
        .token_file
        .clone()
        .or_else(|| config.and_then(|a| a.token_file));
    Ok(Target { base, token_file })
}

/// `host:port` or `http://host:port[/]` → `http://host:port`. The admin
/// listener speaks plain HTTP only.
fn normalise_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => bail!("--admin {url}: the admin listener speaks http, not {scheme}"),
        None => url,
    };
    if rest.is_empty() || rest.contains('/') {
        bail!("--admin {url}: expected http://HOST:PORT");
    }
    Ok(format!("http://{rest}"))
}

/// The address to connect to for a listen address: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached over loopback.
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the admin token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

/// Runs `edge top` until the operator quits.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    if !(opts.interval.is_finite() && (0.1..=3600.0).contains(&opts.interval)) {
        bail!(
            "--interval {}: expected seconds between 0.1 and 3600",
            opts.interval
        );
    }
    let target = resolve(&opts)?;
    let token = target.token_file.as_deref().map(read_token).transpose()?;
    let admin = scrape::Admin::new(target.base, token)?;
    app::run_screen(admin, Duration::from_secs_f64(opts.interval)).await
}

/// [`run`] on a runtime of its own, for a synchronous `main`.
pub fn run_blocking(opts: Options) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(opts))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts() -> Options {
        Options {
            admin: None,
            config: None,
            token_file: None,
            interval: 1.0,
        }
    }

    #[test]
    fn admin_urls() {
        assert_eq!(
            normalise_url("127.0.0.1:9901").unwrap(),
            "http://127.0.0.1:9901"
        );
        assert_eq!(
            normalise_url("http://[::1]:9901/").unwrap(),
            "http://[::1]:9901"
        );
        let e = normalise_url("https://127.0.0.1:9901")
            .unwrap_err()
            .to_string();
        assert!(e.contains("speaks http, not https"), "{e}");
        assert!(normalise_url("http://h:1/metrics").is_err());
        assert_eq!(resolve(&opts()).unwrap().base, DEFAULT_ADMIN);
    }

    #[test]
    fn the_config_names_the_listener_and_token_unless_flags_do() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("edge.toml");
        // the repository's smallest valid config, with an [admin] table
        let text = format!(
            "{}\n[admin]\nlisten = \"0.0.0.0:9911\"\ntoken_file = \"admin.token\"\n",
            include_str!("../../config/examples/minimal.toml")
        );
        std::fs::write(&config, text).unwrap();
        let mut o = opts();
        o.config = Some(config.clone());
        let t = match resolve(&o) {
            Ok(t) => t,
            // the sample config must load; show why not
            Err(e) => panic!("{e:#}"),
        };
        assert_eq!(t.base, "http://127.0.0.1:9911");
        assert_eq!(t.token_file, Some(dir.path().join("admin.token")));
        o.admin = Some("127.0.0.1:1234".into());
        o.token_file = Some(PathBuf::from("/t"));
        let t = resolve(&o).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:1234");
        assert_eq!(t.token_file, Some(PathBuf::from("/t")));

        o.config = Some(dir.path().join("missing.toml"));
        let e = resolve(&o).unwrap_err().to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn empty_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, " \n").unwrap();
        assert!(
            read_token(&path)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        std::fs::write(&path, "s3cret-token-value\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret-token-value");
    }
}
