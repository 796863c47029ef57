//! Traffic capture (`edge-capture`): a sampled, anonymised NDJSON log of
//! event requests in the format `edge-loadtest replay` reads, so production
//! traffic can be replayed.
//!
//! Off unless the config has a `[capture]` table. It knows nothing of the
//! edge's runtime or the Pingora session: [`Capture::build`] takes the
//! `[capture]` config, the pseudonym key ([`Pseudonymizer`]) and the
//! [`CaptureMetrics`] registered into the edge's registry, and the request
//! path hands it a [`Request`] (plain parts and the resolved client address). For each event request
//! whose events passed validation (`POST /api/event`, `GET /api/event.gif`)
//! the request path calls [`Capture::observe`], which decides by `sample_rate` with a
//! fast thread-local RNG, builds an anonymised [`record::CaptureRecord`] from
//! the validated events and queues it for the writer thread ([`writer`])
//! without blocking. Rejected requests are never captured; what happens
//! after validation (rate limits, bot verdicts, Kafka) does not matter.
//!
//! Privacy: the raw client address never reaches the file, only its
//! [`pseudonym`] (`10.x.y.z`, stable for the life of the process, not
//! linkable across restarts); headers are an allow-list; URLs lose their
//! query strings and fragments except `utm_*` tags (see [`record`]).

mod metrics;
pub mod pseudonym;
pub mod record;
pub mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_collector::schema::IncomingEvent;
use http::{HeaderMap, Method, Uri};
use rand::Rng;

pub use metrics::{CaptureMetrics, RecordOutcome};
pub use pseudonym::Pseudonymizer;
use record::RequestParts;
pub use writer::WriterError;
use writer::WriterHandle;

/// The capture of one runtime version: off, or the settings and a writer
/// (shared with the previous version when the file did not change).
#[derive(Debug, Default)]
pub struct Capture {
    active: Option<Active>,
}

#[derive(Debug)]
struct Active {
    sample_rate: f64,
    include_user_agent: bool,
    pseudonyms: &'static Pseudonymizer,
    writer: Arc<WriterHandle>,
}

impl Capture {
    /// No capture.
    pub fn off() -> Self {
        Self::default()
    }

    /// Compiles `[capture]`, keeping `previous`'s writer when it writes the
    /// same file (its rotation limits are updated in place). Client
    /// addresses are written as pseudonyms under `pseudonyms`' key (the
    /// edge passes [`Pseudonymizer::process`], one key per process); records
    /// are counted in `metrics`.
    ///
    /// # Errors
    ///
    /// [`WriterError`] (naming the path) when the file cannot be opened or
    /// the writer thread cannot be started; the edge reports it at
    /// `capture.file`.
    pub fn build(
        cfg: Option<&edge_config::Capture>,
        previous: Option<&Capture>,
        pseudonyms: &'static Pseudonymizer,
        metrics: &CaptureMetrics,
    ) -> Result<Capture, WriterError> {
        let Some(cfg) = cfg else {
            return Ok(Self::off());
        };
        let reused = previous
            .and_then(|p| p.active.as_ref())
            .filter(|a| a.writer.path() == cfg.file)
            .map(|a| a.writer.clone());
        let writer = match reused {
            Some(w) => {
                w.set_limits(cfg.max_file_bytes, cfg.max_files);
                w
            }
            None => Arc::new(WriterHandle::start(
                &cfg.file,
                cfg.max_file_bytes,
                cfg.max_files,
                writer::QUEUE_CAPACITY,
                metrics.clone(),
            )?),
        };
        Ok(Self {
            active: Some(Active {
                sample_rate: cfg.sample_rate,
                include_user_agent: cfg.include_user_agent,
                pseudonyms,
                writer,
            }),
        })
    }

    /// Whether a `[capture]` table is in effect.
    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// Writes out what is queued, waiting up to `timeout` (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Some(a) = &self.active
            && !a.writer.flush(timeout)
        {
            tracing::warn!(file = %a.writer.path().display(), "capture file not flushed in time");
        }
    }

    fn sampled(&self) -> Option<&Active> {
        let a = self.active.as_ref()?;
        (a.sample_rate >= 1.0 || rand::rng().random::<f64>() < a.sample_rate).then_some(a)
    }
}

/// A validated event request as the capture sees it: its parts, and the
/// client address the request path resolved (once, for the bot filter, the
/// rate limiter and the capture alike).
pub struct Request<'a> {
    /// Arrival time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Method.
    pub method: &'a Method,
    /// Host without port.
    pub host: &'a str,
    /// Request URI.
    pub uri: &'a Uri,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The request's validated events.
    pub events: &'a [IncomingEvent],
    /// The resolved client address (never written: only its pseudonym is).
    pub client: IpAddr,
}

impl Capture {
    /// The capture hook of the event endpoints: records the request `req`
    /// builds, when capture is on and this request is sampled (`req` is
    /// called only then). Called only after validation accepted the request.
    pub fn observe<'a>(&self, req: impl FnOnce() -> Request<'a>) {
        let Some(active) = self.sampled() else {
            return;
        };
        let req = req();
        let record = record::build(
            &RequestParts {
                ts_ms: req.ts_ms,
                method: req.method,
                host: req.host,
                uri: req.uri,
                headers: req.headers,
                events: req.events,
                client: active.pseudonyms.pseudonym(req.client),
            },
            active.include_user_agent,
        );
        active.writer.submit(record);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// [`Capture::build`] with the process key and metrics of a fresh registry.
    fn build(
        cfg: Option<&edge_config::Capture>,
        previous: Option<&Capture>,
    ) -> Result<Capture, WriterError> {
        let metrics = CaptureMetrics::new(&prometheus::Registry::new()).unwrap();
        Capture::build(cfg, previous, Pseudonymizer::process().unwrap(), &metrics)
    }

    #[test]
    fn absent_table_is_off_and_an_unchanged_file_keeps_its_writer() {
        assert!(!build(None, None).unwrap().is_on());
        let dir = tempfile::tempdir().unwrap();
        let cfg = edge_config::Capture::new(dir.path().join("t.ndjson"));
        let first = build(Some(&cfg), None).unwrap();
        assert!(first.is_on());
        let same = build(
            Some(&edge_config::Capture {
                sample_rate: 0.5,
                max_files: 2,
                ..cfg.clone()
            }),
            Some(&first),
        )
        .unwrap();
        let (a, b) = (
            first.active.as_ref().unwrap(),
            same.active.as_ref().unwrap(),
        );
        assert!(Arc::ptr_eq(&a.writer, &b.writer));
        assert_eq!(b.sample_rate, 0.5);
        let moved = build(
            Some(&edge_config::Capture::new(dir.path().join("u.ndjson"))),
            Some(&same),
        )
        .unwrap();
        assert!(!Arc::ptr_eq(
            &a.writer,
            &moved.active.as_ref().unwrap().writer
        ));
        let err = build(
            Some(&edge_config::Capture::new(PathBuf::from(
                "/proc/no/such/dir/t",
            ))),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/proc/no/such/dir/t"), "{err}");
    }

    #[test]
    fn sampling_follows_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = edge_config::Capture {
            sample_rate: 0.25,
            ..edge_config::Capture::new(dir.path().join("t.ndjson"))
        };
        let c = build(Some(&cfg), None).unwrap();
        let hits = (0..20_000).filter(|_| c.sampled().is_some()).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
        let all = build(
            Some(&edge_config::Capture {
                sample_rate: 1.0,
                ..cfg
            }),
            Some(&c),
        )
        .unwrap();
        assert!((0..1_000).all(|_| all.sampled().is_some()));
    }

    #[test]
    fn an_observed_request_is_written_with_a_pseudonym_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ndjson");
        let registry = prometheus::Registry::new();
        let metrics = CaptureMetrics::new(&registry).unwrap();
        let key = Pseudonymizer::process().unwrap();
        let cfg = edge_config::Capture {
            sample_rate: 1.0,
            ..edge_config::Capture::new(path.clone())
        };
        let c = Capture::build(Some(&cfg), None, key, &metrics).unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let (method, uri) = (Method::POST, "/api/event?secret=1".parse::<Uri>().unwrap());
        let headers = HeaderMap::new();
        c.observe(|| Request {
            ts_ms: 7,
            method: &method,
            host: "site1.example",
            uri: &uri,
            headers: &headers,
            events: &[],
            client,
        });
        c.flush(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["client_ip"], key.pseudonym(client).to_string());
        assert!(
            !text.contains("203.0.113.9") && !text.contains("secret"),
            "{text}"
        );
        assert_eq!(metrics.count(RecordOutcome::Written), 1);
        let exported = registry.gather();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].name(), "edge_capture_records_total");
    }
}
