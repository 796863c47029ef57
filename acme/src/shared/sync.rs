//! The background task that keeps this edge in step with the fleet's store.
//!
//! * Certificates: at start (the listener's first `Resync`) every row is read
//!   and handed to the manager in batches, unsealed and parsed on all cores,
//!   so serving starts at once and fills in; afterwards a `cert:` NOTIFY
//!   fetches that row, and a poll every `acme.shared.poll_seconds` (and after
//!   every reconnection) reads whatever was written since the last version
//!   seen, so a missed notification costs at most one poll interval.
//! * On-demand approvals: all of them at start and at every poll (the table
//!   holds one small row per approved name), one on its `approval:` NOTIFY;
//!   an `unapproved:` NOTIFY (the `ask` endpoint refused the name on some
//!   edge) is passed on as such.
//! * Challenge responses another edge published are copied into this edge's
//!   map as soon as their NOTIFY arrives (TLS-ALPN-01 is answered from the
//!   map only), and dropped again after twice the order timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_fleetstore::{CertRow, FleetEvent, FleetStore};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

use super::{SharedCert, SharedUpdate, parse_key_type, store_error};
use crate::Acme;
use crate::metrics::METRICS;
use crate::storage_key::StorageKey;
use crate::store::StoredCert;
use edge_certs::from_der_parts;

/// Rows handed to the manager at once during the start-up load.
const BATCH: usize = 1_000;

/// What the task needs.
pub(crate) struct SyncTask {
    /// The store.
    pub store: Arc<FleetStore>,
    /// Unseals private keys.
    pub key: Arc<StorageKey>,
    /// Where mirrored challenge responses go.
    pub acme: Arc<Acme>,
    /// Poll interval.
    pub poll: Duration,
    /// How long a mirrored challenge response is kept.
    pub mirror_for: Duration,
    /// To the manager.
    pub tx: mpsc::Sender<SharedUpdate>,
}

#[derive(Hash, PartialEq, Eq)]
enum Mirrored {
    Http(String),
    Alpn(String),
}

/// Runs until the manager drops its receiver.
pub(crate) async fn run(task: SyncTask) {
    let mut events = match edge_fleetstore::listen(task.store.options().clone()) {
        Ok(rx) => rx,
        Err(e) => {
            store_error("listen", &e);
            return;
        }
    };
    let mut version = 0i64;
    let mut mirrored: HashMap<Mirrored, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(task.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                match event {
                    FleetEvent::Resync => {
                        METRICS.acme_shared.store_up.set(1);
                        if !poll(&task, &mut version).await {
                            return;
                        }
                    }
                    FleetEvent::Down => METRICS.acme_shared.store_up.set(0),
                    FleetEvent::Cert(name) => {
                        if !fetch_one(&task, &name, &mut version).await {
                            return;
                        }
                    }
                    FleetEvent::Gone(name) => {
                        if task.tx.send(SharedUpdate::Gone(name)).await.is_err() {
                            return;
                        }
                    }
                    FleetEvent::Approval(name) => {
                        if !fetch_approval(&task, name).await {
                            return;
                        }
                    }
                    FleetEvent::Unapproved(name) => {
                        if task.tx.send(SharedUpdate::Unapproved(name)).await.is_err() {
                            return;
                        }
                    }
                    FleetEvent::Http(token) => mirror_http(&task, token, &mut mirrored).await,
                    FleetEvent::Alpn(name) => mirror_alpn(&task, name, &mut mirrored).await,
                }
            }
            _ = tick.tick() => {
                if !poll(&task, &mut version).await {
                    return;
                }
                expire(&task, &mut mirrored);
            }
            _ = task.tx.closed() => return,
        }
    }
}

/// Reads every row written after `version`, and every approval; false when
/// the manager is gone.
async fn poll(task: &SyncTask, version: &mut i64) -> bool {
    poll_certs(task, version).await && poll_approvals(task).await
}

async fn poll_approvals(task: &SyncTask) -> bool {
    match task.store.approvals().await {
        Ok(all) if all.is_empty() => true,
        Ok(all) => task.tx.send(SharedUpdate::Approvals(all)).await.is_ok(),
        Err(e) => {
            store_error("approval", &e);
            true
        }
    }
}

async fn fetch_approval(task: &SyncTask, name: String) -> bool {
    match task.store.approval(&name).await {
        Ok(Some(at)) => task
            .tx
            .send(SharedUpdate::Approvals(vec![(name, at)]))
            .await
            .is_ok(),
        Ok(None) => true,
        Err(e) => {
            store_error("approval", &e);
            true
        }
    }
}

async fn poll_certs(task: &SyncTask, version: &mut i64) -> bool {
    let started = Instant::now();
    let full = *version == 0;
    let rows = match task.store.certs_since(*version).await {
        Ok(rows) => rows,
        Err(e) => {
            store_error("certificate", &e);
            return true;
        }
    };
    if let Some(last) = rows.last() {
        *version = (*version).max(last.version);
    }
    let count = rows.len();
    for chunk in rows.chunks(BATCH) {
        let certs = decode_all(task, chunk.to_vec()).await;
        if !certs.is_empty() && task.tx.send(SharedUpdate::Certs(certs)).await.is_err() {
            return false;
        }
    }
    if full {
        METRICS
            .acme_shared
            .load_duration
            .set(started.elapsed().as_secs_f64());
        tracing::info!(
            certificates = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "acme: shared certificates loaded"
        );
    }
    true
}

async fn fetch_one(task: &SyncTask, name: &str, version: &mut i64) -> bool {
    match task.store.get_cert(name).await {
        Ok(Some(row)) => {
            *version = (*version).max(row.version);
            let certs = decode_all(task, vec![row]).await;
            certs.is_empty() || task.tx.send(SharedUpdate::Certs(certs)).await.is_ok()
        }
        Ok(None) => true,
        Err(e) => {
            store_error("certificate", &e);
            true
        }
    }
}

/// Unseals and parses rows on all cores; bad rows are counted and skipped,
/// and so are rows sealed under another storage key (not even tried).
async fn decode_all(task: &SyncTask, rows: Vec<CertRow>) -> Vec<SharedCert> {
    let mine = task.key.check_hex();
    let (rows, other): (Vec<CertRow>, Vec<CertRow>) = rows
        .into_iter()
        .partition(|r| r.key_check.is_empty() || r.key_check == mine);
    if !other.is_empty() {
        super::other_key_counted(other.len());
        tracing::warn!(
            certificates = other.len(),
            "acme: shared certificates sealed under another storage key skipped (a key rotation in progress?)"
        );
    }
    let key = task.key.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let decoded = decode_rows(&rows, &key);
        rows.into_iter().zip(decoded).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut good = Vec::with_capacity(decoded.len());
    for (row, result) in decoded {
        match result {
            Ok(stored) => good.push(SharedCert { stored, row }),
            Err(e) => {
                METRICS
                    .acme_shared
                    .errors
                    .with_label_values(&["decode"])
                    .inc();
                tracing::warn!(error = %e, "acme: shared certificate not usable");
            }
        }
    }
    METRICS
        .acme_shared
        .certificates_received
        .inc_by(good.len() as u64);
    good
}

/// Unseals and parses `rows` on all cores (blocking; the start-up load and
/// its benchmark, `benches/cert_store.rs`).
pub fn decode_rows(rows: &[CertRow], key: &StorageKey) -> Vec<Result<StoredCert, String>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|r| decode(r, key)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("a decoding thread panicked".to_string())])
            })
            .collect()
    })
}

/// One row: the key unsealed exactly as from disk (context `cert-key:{name}`).
pub(super) fn decode(row: &CertRow, key: &StorageKey) -> Result<StoredCert, String> {
    let key_type = parse_key_type(&row.key_type)
        .ok_or_else(|| format!("{}: unknown key type {:?}", row.name, row.key_type))?;
    let key_der = key
        .open(&format!("cert-key:{}", row.name), &row.key_sealed)
        .map_err(|e| format!("{}: private key: {e}", row.name))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(row.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: chain: {e}", row.name))?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let cert = from_der_parts(chain, private, &row.name).map_err(|e| e.to_string())?;
    Ok(StoredCert {
        name: row.name.clone(),
        key_type,
        cert,
    })
}

async fn mirror_http(task: &SyncTask, token: String, mirrored: &mut HashMap<Mirrored, Instant>) {
    let mine = mirrored.contains_key(&Mirrored::Http(token.clone()));
    match task.store.get_http(&token).await {
        Ok(Some((name, key_authorization))) => {
            if !mine && task.acme.challenges.http_response(&name, &token).is_some() {
                return; // this edge's own order
            }
            task.acme
                .challenges
                .add_http(&name, &token, &key_authorization);
            mirrored.insert(Mirrored::Http(token), Instant::now());
        }
        Ok(None) => {}
        Err(e) => store_error("challenge", &e),
    }
}

async fn mirror_alpn(task: &SyncTask, name: String, mirrored: &mut HashMap<Mirrored, Instant>) {
    let mine = mirrored.contains_key(&Mirrored::Alpn(name.clone()));
    if !mine && task.acme.challenges.alpn_certificate(&name).is_some() {
        return; // this edge's own order
    }
    match task.store.get_alpn(&name).await {
        Ok(Some(digest)) => match task.acme.challenges.add_alpn(&name, &digest) {
            Ok(()) => {
                mirrored.insert(Mirrored::Alpn(name), Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "acme: shared TLS-ALPN-01 response unusable"),
        },
        Ok(None) => {}
        Err(e) => store_error("challenge", &e),
    }
}

fn expire(task: &SyncTask, mirrored: &mut HashMap<Mirrored, Instant>) {
    let now = Instant::now();
    mirrored.retain(|entry, at| {
        let keep = now.duration_since(*at) < task.mirror_for;
        if !keep {
            match entry {
                Mirrored::Http(token) => task.acme.challenges.remove_http(token),
                Mirrored::Alpn(name) => task.acme.challenges.remove_alpn(name),
            }
        }
        keep
    });
}
