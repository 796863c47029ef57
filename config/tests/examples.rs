//! Every file in `config/examples/` must be a valid configuration.

use std::path::Path;

#[test]
fn every_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Err(errors) = edge_config::load(&path) {
                panic!("{} is not valid:\n{errors}", path.display());
            }
            checked.push(path);
        }
    }
    assert!(
        checked.len() >= 2,
        "expected edge.toml and minimal.toml, found {checked:?}"
    );
}

#[test]
fn production_example_has_what_it_promises() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/edge.toml");
    let loaded = edge_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.sites.len(), 3);
    assert!(c.acme.is_some());
    assert_eq!(c.listeners.https, "0.0.0.0:443".parse().ok());
    assert_eq!(c.listeners.http, "0.0.0.0:80".parse().ok());
    assert!(c.admin.listen.ip().is_loopback());
    assert!(c.kafka.tls.is_some());
    assert_eq!(c.encryption.backend_keys.len(), 1);
    assert_eq!(loaded.version().len(), 12);
    assert_eq!(loaded.sha256.len(), 64);
}

#[test]
fn minimal_example_uses_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.toml");
    let loaded = edge_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.listeners.https, None);
    assert_eq!(c.listeners.http, "127.0.0.1:8080".parse().ok());
    assert_eq!(c.limits, edge_config::Limits::default());
    // data_dir defaults to ./data next to the file.
    assert_eq!(
        c.data_dir,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data")
    );
}
