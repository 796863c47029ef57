//! Command-line interface definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clientaddr::ClientIpMode;

/// Load generator and traffic replayer for the edge ingestion proxy.
#[derive(Debug, Parser)]
#[command(name = "edge-loadtest", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The two workloads.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate synthetic events at a constant (open-loop) rate.
    Synth(SynthArgs),
    /// Replay an NDJSON request log or a combined-format access log.
    Replay(ReplayArgs),
}

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnMode {
    /// Reuse one connection per worker and source address.
    Keepalive,
    /// Open a new TCP (and TLS) connection for every request.
    NewConn,
}

/// Options shared by `synth` and `replay`: where to send, how, and what to report.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Base URL of the edge, e.g. `http://127.0.0.1:8080` or `https://127.0.0.1:8443`.
    #[arg(long)]
    pub target: String,
    /// Maximum requests in flight (one worker per slot).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Connection reuse mode.
    #[arg(long, value_enum, default_value_t = ConnMode::Keepalive)]
    pub mode: ConnMode,
    /// Speak HTTP/2 (ALPN h2 over TLS, prior knowledge over cleartext).
    #[arg(long)]
    pub http2: bool,
    /// Accept any server certificate (test setups only).
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,
    /// PEM file with CA certificates to trust for https targets.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Never resume TLS sessions: every new connection makes a full
    /// handshake (by default, tickets and session ids are reused, and the
    /// summary counts full and resumed handshakes separately).
    #[arg(long)]
    pub no_tls_resumption: bool,
    /// Local source addresses to bind: `A-B` (IPv4 range) or a single address.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// How the target learns each client's address: bind a local source
    /// address per client, send `X-Forwarded-For`, or start each connection
    /// with a PROXY protocol v1/v2 header (one connection pool per client).
    #[arg(long, value_enum, default_value_t = ClientIpMode::Bind)]
    pub client_ip_mode: ClientIpMode,
    /// Per-request timeout (connect + TLS + request + response body), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG with latency-over-time and percentile-distribution charts.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Disable the live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Fail (exit status 2) when connect/TLS/I/O errors and timeouts exceed
    /// this share of the requests sent: a percentage (`1%`) or a fraction
    /// (`0.01`). A run in which no request got a 2xx answer fails too.
    #[arg(long, default_value = "1%", value_parser = parse_rate)]
    pub max_error_rate: f64,
    /// The edge's admin listener, e.g. `http://127.0.0.1:9901`: its
    /// `/metrics` are read before and after the run, and the report says
    /// what the edge did with the traffic.
    #[arg(long)]
    pub admin: Option<String>,
    /// File holding the admin token (`admin.token_file` on the edge), sent
    /// as `Authorization: Bearer`.
    #[arg(long, requires = "admin")]
    pub admin_token_file: Option<PathBuf>,
}

/// Parses `--max-error-rate`: `N%` (0–100) or a fraction (0–1).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (1%) or a fraction (0.01)"))?;
    let rate = v / scale;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{s:?} is outside 0–100 % (0–1)"));
    }
    Ok(rate)
}

/// Arguments of `synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Transport and reporting options.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Requests per second (open loop).
    #[arg(long)]
    pub rate: f64,
    /// Run length in seconds.
    #[arg(long)]
    pub duration: f64,
    /// Number of sites: site1.example … siteN.example (with 1, the Host is
    /// `--host` or the target's host).
    #[arg(long, default_value_t = 1)]
    pub sites: usize,
    /// Host header, TLS SNI and event URL host of every request (only with
    /// `--sites 1`; default: the target's host).
    #[arg(long)]
    pub host: Option<String>,
    /// Number of synthetic client IPs (each bound to its own source address).
    #[arg(long, default_value_t = 1)]
    pub ips: usize,
    /// Fraction of requests sent with a crawler user agent.
    #[arg(long, default_value_t = 0.0)]
    pub bot_share: f64,
    /// Events per request; above 1 the body is a JSON array.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Pad each event to roughly this many bytes.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// Burst: `FACTOR:PERIOD_S` multiplies the rate by FACTOR during the first second of every period.
    #[arg(long)]
    pub burst: Option<String>,
    /// Seed for the payload generator (runs are reproducible).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Arguments of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// NDJSON request records or a combined-format access log.
    pub file: PathBuf,
    /// Transport and reporting options.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Divide original inter-arrival times by this factor.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max")]
    pub speed: f64,
    /// Send as fast as possible (bounded by --connections); latency is then service time.
    #[arg(long)]
    pub max: bool,
    /// Host for records that carry none (access logs without a host field).
    /// With `--as-events` it is the site of every event, over the log's vhost.
    #[arg(long)]
    pub host: Option<String>,
    /// Send each page view of a combined/common access log as the tracker
    /// event it stands for (`POST /api/event`), skip the other lines.
    #[arg(long)]
    pub as_events: bool,
    /// With `--as-events`: comma-separated extensions that are assets, not
    /// page views (replaces the built-in list; `""` for none).
    #[arg(long, requires = "as_events")]
    pub asset_extensions: Option<String>,
    /// Stop at the first malformed line instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_as_percent_or_fraction() {
        assert_eq!(parse_rate("1%"), Ok(0.01));
        assert_eq!(parse_rate(" 50 % "), Ok(0.5));
        assert_eq!(parse_rate("0.02"), Ok(0.02));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("2").is_err());
        assert!(parse_rate("lots").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
