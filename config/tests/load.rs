//! `load` / `parse_str` / `LoadedConfig` behaviour: files, hashes, relative
//! paths and errors raised after loading.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use edge_config::{ConfigError, ConfigErrors, LoadedConfig, load, parse_str};
use sha2::{Digest, Sha256};

const KEY_ID: &str = "1bf54b4d765f4db4";
const PUBLIC_KEY: &str = "Fswmsl9cVJDqZ2A8WRNKQGGrxuDFpocFNH1/J+67LDc=";

fn text() -> String {
    format!(
        "data_dir = \"state\"\n\
         [listeners]\n\
         https = \"0.0.0.0:8443\"\n\
         [admin]\n\
         token_file = \"secrets/admin-token\"\n\
         [[tls.certificates]]\n\
         cert_file = \"tls/cert.pem\"\n\
         key_file = \"/abs/key.pem\"\n\
         [[sites]]\n\
         id = \"s\"\n\
         domains = [\"s.example.com\"]\n\
         [kafka.tls]\n\
         ca_file = \"./kafka/ca.pem\"\n\
         [encryption]\n\
         active_key_id = \"{KEY_ID}\"\n\
         [[encryption.backend_keys]]\n\
         id = \"{KEY_ID}\"\n\
         public_key = \"{PUBLIC_KEY}\"\n"
    )
}

#[test]
fn loaded_config_is_clone_send_sync_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    assert_traits::<LoadedConfig>();
    assert_traits::<ConfigErrors>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<ConfigErrors>();
    assert_error::<ConfigError>();
}

#[test]
fn load_reads_hashes_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("edge.toml");
    let text = text();
    let mut file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    drop(file);

    let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.sha256, hex::encode(Sha256::digest(text.as_bytes())));
    assert_eq!(loaded.version(), &loaded.sha256[..12]);

    let c = &loaded.config;
    let base = dir.path();
    assert_eq!(c.data_dir, base.join("state"));
    assert_eq!(c.admin.token_file, Some(base.join("secrets/admin-token")));
    assert_eq!(c.tls.certificates[0].cert_file, base.join("tls/cert.pem"));
    assert_eq!(
        c.tls.certificates[0].key_file,
        PathBuf::from("/abs/key.pem")
    );
    let ca = c.kafka.tls.as_ref().and_then(|t| t.ca_file.clone());
    assert_eq!(ca, Some(base.join("kafka/ca.pem")));

    // Same text through parse_str gives the same result.
    let again = parse_str(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.config, loaded.config);
    assert_eq!(again.sha256, loaded.sha256);
}

#[test]
fn missing_file_is_one_error_without_line() {
    let path = Path::new("/nonexistent/edge.toml");
    let errors = load(path)
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(errors.file, path);
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].line, None);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/edge.toml: cannot read configuration file:"),
        "{errors}"
    );
}

#[test]
fn non_utf8_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, b"data_dir = \"\xff\"\n").unwrap_or_else(|e| panic!("{e}"));
    let errors = load(&path)
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert!(
        errors.errors[0].message.contains("not valid UTF-8"),
        "{errors}"
    );
}

#[test]
fn error_at_points_at_the_key_line() {
    let origin = Path::new("/etc/edge/edge.toml");
    let loaded = parse_str(&text(), origin).unwrap_or_else(|e| panic!("{e}"));
    let err = loaded.error_at("tls.certificates[0].cert_file", "cannot read: No such file");
    assert_eq!(
        err,
        ConfigError {
            line: Some(7),
            key: "tls.certificates[0].cert_file".into(),
            message: "cannot read: No such file".into(),
        }
    );
    assert_eq!(
        loaded
            .errors_at("tls.certificates[0].key_file", "bad key")
            .to_string(),
        "/etc/edge/edge.toml:8: tls.certificates[0].key_file: bad key"
    );
    // Keys left at their default point at their table, or nowhere.
    assert_eq!(loaded.line_of("kafka.tls.cert_file"), Some(12));
    assert_eq!(loaded.line_of("limits.max_body_bytes"), None);
    assert_eq!(loaded.error_at("limits", "x").line, None);
    assert_eq!(loaded.line_of("sites[0].domains[0]"), Some(11));
    assert_eq!(loaded.line_of("encryption.backend_keys[0]"), Some(16));
}

#[test]
fn relative_origin_keeps_relative_paths() {
    let loaded = parse_str(&text(), Path::new("edge.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.data_dir, PathBuf::from("state"));
    let ca = loaded
        .config
        .kafka
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.clone());
    assert_eq!(ca, Some(PathBuf::from("kafka/ca.pem")));
}
