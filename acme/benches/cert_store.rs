//! Start-up cost of the ACME certificate store: loading (decrypting, parsing
//! and checking) 10,000 stored certificates on all cores.
//!
//! `cargo bench -p edge-acme --bench cert_store`. The target is < 2 s for
//! 10,000 certificates (issue: "10,000 certificates load in < 2 s").
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_acme::{CertStore, StorageKey};
use edge_config::AcmeKeyType;

const CERTS: usize = 10_000;

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
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
