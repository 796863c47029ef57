//! The compiled form of one configuration version.
//!
//! [`Runtime::build`] is the single path from a validated [`LoadedConfig`] to
//! what request handlers read: startup, `edge validate` and every reload call
//! it. It does all I/O a config implies (certificates, token file) and reports
//! every failure with the config file, line and key. It binds no sockets.

use std::sync::Arc;
use std::time::Duration;

use edge_collector::schema::Bounds;
use edge_config::{BotAction, ConfigError, ConfigErrors, LoadedConfig, PlainHttp, TlsVersion};
use edge_envelope::keys::PublicKey;
use edge_envelope::seal::{RotationPolicy, Sealer};

use crate::bots::ListStamps;
use crate::clientip::ClientIpPolicy;
use crate::metrics::handles::SiteCounters;
use crate::tls::MinTlsVersion;
use edge_acme::{AcmePolicy, StorageKey};
use edge_botfilter::BotFilter;
use edge_capture::{Capture, Pseudonymizer};
use edge_certs::hostmap::HostMap;
use edge_certs::{CertMap, LoadedCert, load_pem_pair};
use edge_ratelimit::RateLimiters;

/// A configured site as the request path needs it.
#[derive(Debug)]
pub struct SiteEntry {
    /// Site id (Kafka key, AEAD associated data, metric label).
    pub id: String,
    /// Allowed CORS origins; empty means any origin.
    pub allowed_origins: Vec<String>,
    /// What happens to bots' events on this site.
    pub bot_action: BotAction,
    /// This site's request-path metric handles.
    pub(crate) counters: SiteCounters,
}

impl SiteEntry {
    /// Whether a request from `origin` may post events for this site.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Sites by host name: exact names and `*.parent` wildcards.
#[derive(Debug, Default)]
pub struct SiteIndex {
    hosts: HostMap<Arc<SiteEntry>>,
}

impl SiteIndex {
    /// The site for a Host header value (port and trailing dot ignored, case-insensitive).
    pub fn lookup(&self, host: &str) -> Option<&Arc<SiteEntry>> {
        self.hosts.get(strip_port(host))
    }
}

/// The host part of a `Host` value (`name:port`, `[v6]:port`).
pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Everything request handlers read for one configuration version.
pub struct Runtime {
    /// The configuration this was built from.
    pub loaded: LoadedConfig,
    /// Sites by host.
    pub sites: SiteIndex,
    /// Event schema bounds.
    pub bounds: Bounds,
    /// Request body limit.
    pub max_body_bytes: u64,
    /// Time allowed for a client to send its body.
    pub body_timeout: Duration,
    /// Encrypts events to the active backend key.
    pub sealer: Arc<Sealer>,
    /// Certificates to install in the SNI resolver.
    pub certs: CertMap,
    /// Minimum TLS version on the public listener.
    pub min_tls: MinTlsVersion,
    /// Bearer token for the admin listener, if configured.
    pub admin_token: Option<Vec<u8>>,
    /// What the plain HTTP listener does besides ACME challenges.
    pub plain_http: PlainHttp,
    /// Automatic certificates, when `[acme]` is configured.
    pub acme: Option<Arc<AcmePolicy>>,
    /// Event rate limiters (state carried over reloads per unchanged scope).
    pub rate_limits: Arc<RateLimiters>,
    /// How the client address is found.
    pub client_ip: ClientIpPolicy,
    /// The compiled bot filter (`None` when `bots.enabled = false`).
    pub bots: Option<Arc<BotFilter>>,
    /// Stamps of the bot list files this runtime was built from.
    pub bot_stamps: ListStamps,
    /// Traffic capture (`[capture]`; the writer carried over while the file is unchanged).
    pub capture: Capture,
}

impl Runtime {
    /// Builds a runtime; `previous` lets unchanged parts (the sealer and its
    /// current data key) carry over a reload. Every step reports its errors
    /// with the config file, line and key; all of them are returned together.
    pub fn build(
        loaded: &LoadedConfig,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigErrors> {
        let cfg = &loaded.config;
        let mut errors = Vec::new();
        let sites = build_sites(cfg);
        let certs = CertMap::new(&load_certificates(loaded, &mut errors));
        let sealer = build_sealer(loaded, previous)
            .map_err(|e| errors.push(e))
            .ok();
        let admin_token = read_admin_token(loaded, &mut errors);
        let acme = build_acme(loaded, &certs, &mut errors);
        let bot_stamps = ListStamps::read(&cfg.bots);
        let bots = build_bots(loaded, &bot_stamps, previous, &mut errors);
        let capture = build_capture(cfg.capture.as_ref(), previous.map(|p| &p.capture))
            .unwrap_or_else(|e| {
                errors.push(loaded.error_at("capture.file", e));
                Capture::off()
            });

        let (Some(sealer), true) = (sealer, errors.is_empty()) else {
            return Err(ConfigErrors {
                file: loaded.path.clone(),
                errors,
            });
        };
        Ok(Runtime {
            loaded: loaded.clone(),
            sites,
            bounds: Bounds {
                max_batch_events: cfg.limits.max_batch_events as usize,
                ..Bounds::default()
            },
            max_body_bytes: cfg.limits.max_body_bytes,
            body_timeout: Duration::from_millis(cfg.limits.request_body_timeout_ms),
            sealer,
            certs,
            min_tls: match cfg.tls.min_version {
                TlsVersion::V1_2 => MinTlsVersion::Tls12,
                TlsVersion::V1_3 => MinTlsVersion::Tls13,
            },
            admin_token,
            plain_http: cfg.listeners.plain_http,
            acme,
            rate_limits: Arc::new(RateLimiters::build(cfg, previous.map(|p| &*p.rate_limits))),
            client_ip: ClientIpPolicy::new(&cfg.client_ip),
            bots,
            bot_stamps,
            capture,
        })
    }

    /// The active config version (short hash).
    pub fn version(&self) -> &str {
        self.loaded.version()
    }
}

/// Sites by every domain they list.
fn build_sites(cfg: &edge_config::Config) -> SiteIndex {
    let mut sites = SiteIndex::default();
    for site in &cfg.sites {
        let entry = Arc::new(SiteEntry {
            id: site.id.clone(),
            allowed_origins: site.allowed_origins.clone(),
            bot_action: site.bot_action.unwrap_or(cfg.bots.action),
            counters: SiteCounters::default(),
        });
        for domain in &site.domains {
            sites.hosts.insert(domain, entry.clone());
        }
    }
    sites
}

/// The `[[tls.certificates]]` files that load; the others become errors.
fn load_certificates(loaded: &LoadedConfig, errors: &mut Vec<ConfigError>) -> Vec<LoadedCert> {
    let mut certs = Vec::new();
    for (i, pair) in loaded.config.tls.certificates.iter().enumerate() {
        match load_pem_pair(&pair.cert_file, &pair.key_file) {
            Ok(c) => certs.push(c),
            Err(e) => errors
                .push(loaded.error_at(&format!("tls.certificates[{i}].cert_file"), e.to_string())),
        }
    }
    certs
}

/// The admin bearer token from `admin.token_file`, if configured.
fn read_admin_token(loaded: &LoadedConfig, errors: &mut Vec<ConfigError>) -> Option<Vec<u8>> {
    let path = loaded.config.admin.token_file.as_ref()?;
    read_secret_file(path)
        .map_err(|reason| errors.push(loaded.error_at("admin.token_file", reason)))
        .ok()
}

/// The ACME policy when `[acme]` is configured: its storage key and CA file
/// are read here so a bad one fails the config, not the first order.
fn build_acme(
    loaded: &LoadedConfig,
    certs: &CertMap,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<AcmePolicy>> {
    let cfg = &loaded.config;
    let acme = cfg.acme.as_ref()?;
    let key = match (&acme.storage_key_file, &acme.storage_key_env) {
        (Some(file), _) => StorageKey::from_file(file)
            .map_err(|e| loaded.error_at("acme.storage_key_file", e.to_string())),
        (None, Some(var)) => StorageKey::from_env(var)
            .map_err(|e| loaded.error_at("acme.storage_key_env", e.to_string())),
        (None, None) => Err(loaded.error_at("acme", "no storage key configured")),
    };
    if let Some(ca_file) = &acme.ca_file
        && let Err(e) = std::fs::read(ca_file)
    {
        errors.push(loaded.error_at(
            "acme.ca_file",
            format!("cannot read {}: {e}", ca_file.display()),
        ));
    }
    match key {
        Ok(key) => Some(Arc::new(AcmePolicy::build(cfg, acme, Arc::new(key), certs))),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The bot filter (`None` when disabled), reusing the previous one while its
/// settings and list files are unchanged.
fn build_bots(
    loaded: &LoadedConfig,
    stamps: &ListStamps,
    previous: Option<&Runtime>,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<BotFilter>> {
    let previous = previous.map(|p| (&p.loaded.config.bots, &p.bot_stamps, p.bots.as_ref()));
    crate::bots::build(&loaded.config.bots, stamps, previous)
        .map_err(|e| errors.push(loaded.error_at("bots", e.to_string())))
        .ok()
        .flatten()
}

fn build_sealer(
    loaded: &LoadedConfig,
    previous: Option<&Runtime>,
) -> Result<Arc<Sealer>, ConfigError> {
    let enc = &loaded.config.encryption;
    let Some((index, key)) = enc
        .backend_keys
        .iter()
        .enumerate()
        .find(|(_, k)| k.id == enc.active_key_id)
    else {
        return Err(loaded.error_at(
            "encryption.active_key_id",
            format!("no backend key with id {:?}", enc.active_key_id),
        ));
    };
    let public = PublicKey::from_base64(&key.public_key).map_err(|e| {
        loaded.error_at(
            &format!("encryption.backend_keys[{index}].public_key"),
            e.to_string(),
        )
    })?;
    let policy = RotationPolicy {
        max_age: Duration::from_secs(enc.data_key_max_age_seconds),
        max_events: enc.data_key_max_events,
    };
    if let Some(prev) = previous {
        let prev_enc = &prev.loaded.config.encryption;
        let same_key = prev.sealer.recipient_key_id() == public.key_id();
        let same_policy = prev_enc.data_key_max_age_seconds == enc.data_key_max_age_seconds
            && prev_enc.data_key_max_events == enc.data_key_max_events;
        if same_key && same_policy {
            return Ok(prev.sealer.clone());
        }
    }
    Sealer::new(public, policy)
        .map(Arc::new)
        .map_err(|e| loaded.error_at("encryption.active_key_id", e.to_string()))
}

/// Compiles `[capture]` for `edge-capture`: the process-wide pseudonym key
/// (one per process, never written; pseudonyms are stable across reloads and
/// not linkable across restarts) and the capture metrics of the edge's registry.
fn build_capture(
    cfg: Option<&edge_config::Capture>,
    previous: Option<&Capture>,
) -> Result<Capture, String> {
    if cfg.is_none() {
        return Ok(Capture::off());
    }
    let pseudonyms = Pseudonymizer::process()
        .map_err(|_| "cannot generate the pseudonym key (system random source failed)")?;
    Capture::build(cfg, previous, pseudonyms, &crate::metrics::METRICS.capture)
        .map_err(|e| e.to_string())
}

/// Reads a secret (token) file, refusing files other users can read.
fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = edge_certs::secret_file::read_private_text(path, "secret files")?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(format!(
            "{}: token must be at least 16 characters",
            path.display()
        ));
    }
    Ok(token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lookup_ignores_port_case_and_trailing_dot() {
        let mut idx = SiteIndex::default();
        let site = Arc::new(SiteEntry {
            id: "a".into(),
            allowed_origins: vec![],
            bot_action: BotAction::Drop,
            counters: SiteCounters::default(),
        });
        idx.hosts.insert("stats.example.com", site.clone());
        idx.hosts.insert("*.example.org", site);
        assert!(idx.lookup("Stats.Example.com:8443").is_some());
        assert!(idx.lookup("stats.example.com.").is_some());
        assert!(idx.lookup("x.example.org").is_some());
        assert!(idx.lookup("example.org").is_none());
        assert!(idx.lookup("other.example.com").is_none());
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
    }

    #[test]
    fn origin_allow_list() {
        let any = SiteEntry {
            id: "a".into(),
            allowed_origins: vec![],
            bot_action: BotAction::Drop,
            counters: SiteCounters::default(),
        };
        assert!(any.allows_origin("https://evil.example"));
        let some = SiteEntry {
            id: "a".into(),
            allowed_origins: vec!["https://shop.example.com".into()],
            bot_action: BotAction::Drop,
            counters: SiteCounters::default(),
        };
        assert!(some.allows_origin("https://shop.example.com"));
        assert!(!some.allows_origin("https://evil.example"));
    }
}
