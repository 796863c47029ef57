//! Start-up cost of the ACME certificate store: loading (decrypting, parsing
//! and checking) 10,000 stored certificates on all cores.
//!
//! `cargo bench -p edge-acme --bench cert_store`. The target is < 2 s for
//! 10,000 certificates (issue: "10,000 certificates load in < 2 s").
//!
//! With PostgreSQL at 127.0.0.1:5432 (user postgres, trust) it also times the
//! start-up load of `[acme.shared]` (issue 16): the same 10,000 certificates
//! read from a throw-away schema (`certs_since(0)`) and unsealed and parsed
//! on all cores (`decode_shared_rows`), so the two are compared in one run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_acme::decode_shared_rows;
use edge_acme::{CertStore, StorageKey};
use edge_config::AcmeKeyType;
use edge_fleetstore::{FleetStore, StoreOptions};

const CERTS: usize = 10_000;

/// Every certificate on disk, copied into the shared store (as an edge
/// would have written them: key sealed, under a lease).
async fn populate_shared(disk: &CertStore, dir: &std::path::Path, shared: &FleetStore) {
    let _ = disk;
    for entry in std::fs::read_dir(dir.join("certs")).unwrap() {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        let name = file["name"].as_str().unwrap();
        use base64::Engine;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(file["key_sealed"].as_str().unwrap())
            .unwrap();
        let lease = shared
            .acquire(name, "bench", Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        let cert = edge_fleetstore::certs::NewCert {
            name,
            key_type: "ecdsa-p256",
            chain_pem: file["chain_pem"].as_str().unwrap(),
            key_sealed: &sealed,
            not_after: 0,
            // Unknown: decoded with whatever key the reader holds.
            key_check: "",
        };
        shared.put_cert(&lease, cert).await.unwrap();
    }
}

fn populate(store: &CertStore) {
    let issuer_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&issuer_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, issuer_key);
    for i in 0..CERTS {
        let name = format!("site{i}.customers.example.com");
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.clone()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let chain = format!("{}{}", leaf.pem(), ca_cert.pem());
        store
            .save_cert(&name, AcmeKeyType::EcdsaP256, &chain, &key.serialize_der())
            .unwrap();
    }
}

fn load(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(StorageKey::from_bytes(&[42; 32]).unwrap());
    let store = CertStore::open(dir.path(), key).unwrap();
    populate(&store);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut group = c.benchmark_group("cert_store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("load_all_{CERTS}_on_{threads}_threads"), |b| {
        b.iter(|| {
            let (good, bad) = store.load_all(threads);
            assert_eq!((good.len(), bad.len()), (CERTS, 0));
            good
        })
    });
    group.bench_function(format!("load_all_{CERTS}_on_1_thread"), |b| {
        b.iter(|| store.load_all(1).0.len())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("bench_cert_store_{}", std::process::id());
    let options = StoreOptions {
        url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        schema: schema.clone(),
        timeout: Duration::from_secs(60),
    };
    match rt.block_on(FleetStore::connect(options)) {
        Ok(shared) => {
            rt.block_on(populate_shared(&store, dir.path(), &shared));
            let key = StorageKey::from_bytes(&[42; 32]).unwrap();
            group.bench_function(format!("shared_load_{CERTS}_on_{threads}_threads"), |b| {
                b.iter(|| {
                    let rows = rt.block_on(shared.certs_since(0)).unwrap();
                    let decoded = decode_shared_rows(&rows, &key);
                    assert!(decoded.iter().all(Result::is_ok));
                    assert_eq!(decoded.len(), CERTS);
                    decoded
                })
            });
            group.bench_function(format!("shared_query_only_{CERTS}"), |b| {
                b.iter(|| rt.block_on(shared.certs_since(0)).unwrap().len())
            });
            rt.block_on(shared.drop_schema()).unwrap();
        }
        Err(e) => eprintln!("PostgreSQL unavailable, shared store not measured: {e}"),
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
