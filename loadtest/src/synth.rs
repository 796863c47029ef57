//! Synthetic request generation: sites, clients, bots, batches, padding.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::request::PlannedRequest;

/// User agent sent for bot requests.
pub const BOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// User agent sent for ordinary requests.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Number of sites (site1.example …).
    pub sites: usize,
    /// The one Host every request carries (instead of site1.example …).
    pub host: Option<String>,
    /// Number of client slots.
    pub ips: usize,
    /// Fraction of requests with a crawler user agent.
    pub bot_share: f64,
    /// Events per request (>1 → JSON array).
    pub batch: usize,
    /// Approximate bytes per event (padding goes into `props.pad`).
    pub payload_bytes: Option<usize>,
}

/// Seeded generator of synthetic requests.
#[derive(Debug)]
pub struct SynthGen {
    cfg: SynthConfig,
    rng: StdRng,
    seq: u64,
}

/// Name of site number `i` (0-based): `site{i+1}.example`.
pub fn site_host(i: usize) -> String {
    format!("site{}.example", i + 1)
}

impl SynthGen {
    /// A generator with a fixed seed (same seed, same requests).
    pub fn new(cfg: SynthConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
        }
    }

    /// The next request, to be sent at `offset` from the run start.
    pub fn next_request(&mut self, offset: Option<Duration>) -> PlannedRequest {
        self.seq += 1;
        let site = self.rng.random_range(0..self.cfg.sites.max(1));
        let client = self.rng.random_range(0..self.cfg.ips.max(1));
        let bot = self.rng.random::<f64>() < self.cfg.bot_share;
        let host = match &self.cfg.host {
            Some(h) => h.clone(),
            None => site_host(site),
        };
        let events: Vec<Value> = (0..self.cfg.batch.max(1))
            .map(|_| self.event(&host))
            .collect();
        let body = if events.len() == 1 {
            events.into_iter().next().unwrap_or_default()
        } else {
            Value::Array(events)
        };
        PlannedRequest {
            offset,
            method: Method::POST,
            host,
            path: "/api/event".to_owned(),
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                (
                    "user-agent".to_owned(),
                    if bot { BOT_UA } else { BROWSER_UA }.to_owned(),
                ),
            ],
            body: Bytes::from(body.to_string()),
            client,
            client_addr: crate::clientaddr::synthetic(client),
        }
    }

    fn event(&mut self, host: &str) -> Value {
        let page = self.rng.random_range(0..100u32);
        let mut ev = json!({
            "name": "pageview",
            "url": format!("https://{host}/page/{page}"),
            "referrer": "https://ref.example/",
            "props": {"seq": self.seq},
        });
        if let Some(target) = self.cfg.payload_bytes {
            let base = ev.to_string().len() + r#","pad":"""#.len();
            let pad = "x".repeat(target.saturating_sub(base));
            ev["props"]["pad"] = Value::String(pad);
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SynthConfig {
        SynthConfig {
            sites: 3,
            host: None,
            ips: 4,
            bot_share: 0.2,
            batch: 1,
            payload_bytes: None,
        }
    }

    #[test]
    fn single_event_body_is_object() {
        let mut g = SynthGen::new(cfg(), 7);
        let r = g.next_request(None);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v.is_object());
        assert_eq!(v["name"], "pageview");
        assert!(
            v["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{}/", r.host))
        );
        assert_eq!(r.path, "/api/event");
        assert_eq!(r.method, Method::POST);
    }

    #[test]
    fn batch_body_is_array() {
        let mut g = SynthGen::new(SynthConfig { batch: 5, ..cfg() }, 7);
        let v: Value = serde_json::from_slice(&g.next_request(None).body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 5);
    }

    #[test]
    fn padding_reaches_roughly_requested_size() {
        let mut g = SynthGen::new(
            SynthConfig {
                payload_bytes: Some(2000),
                ..cfg()
            },
            1,
        );
        let len = g.next_request(None).body.len();
        assert!((1990..=2010).contains(&len), "{len}");
    }

    #[test]
    fn bot_share_sites_and_clients_over_many_draws() {
        let mut g = SynthGen::new(cfg(), 42);
        let n = 20_000;
        let mut bots = 0;
        let mut sites = std::collections::HashSet::new();
        let mut clients = std::collections::HashSet::new();
        for _ in 0..n {
            let r = g.next_request(None);
            let ua = &r.headers.iter().find(|(k, _)| k == "user-agent").unwrap().1;
            if ua == BOT_UA {
                bots += 1;
            }
            sites.insert(r.host);
            clients.insert(r.client);
        }
        let share = f64::from(bots) / f64::from(n);
        assert!((share - 0.2).abs() < 0.02, "bot share {share}");
        assert_eq!(sites.len(), 3);
        assert!(sites.contains("site3.example"));
        assert_eq!(clients, (0..4).collect());
    }

    #[test]
    fn a_fixed_host_names_every_request_and_event_url() {
        let mut g = SynthGen::new(
            SynthConfig {
                sites: 1,
                host: Some("localhost".into()),
                ..cfg()
            },
            5,
        );
        for _ in 0..20 {
            let r = g.next_request(None);
            assert_eq!(r.host, "localhost");
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["url"].as_str().unwrap().starts_with("https://localhost/"));
        }
    }

    #[test]
    fn same_seed_same_requests() {
        let a: Vec<_> = {
            let mut g = SynthGen::new(cfg(), 9);
            (0..10).map(|_| g.next_request(None)).collect()
        };
        let mut g = SynthGen::new(cfg(), 9);
        let b: Vec<_> = (0..10).map(|_| g.next_request(None)).collect();
        assert_eq!(a, b);
    }
}
