//! Certificates and ACME accounts on disk, private keys encrypted at rest.
//!
//! Layout under `{data_dir}/acme/` (directories 0700, files 0600):
//!
//! * `certs/{name}.json`: `{ name, key_type, chain_pem, key_sealed }`; the
//!   chain is public, the PKCS#8 private key is sealed with the storage key
//!   (context `cert-key:{name}`).
//! * `accounts/{sha256(directory_url)[..16]}.sealed`: the account
//!   credentials (they hold the account key), sealed as a whole.
//!
//! Every write goes to a temporary file that is synced and renamed, so a
//! crash leaves either the old or the new version. Loading runs on all cores:
//! a large edge must not wait minutes for its certificates at start.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use edge_config::AcmeKeyType;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::storage_key::StorageKey;
use edge_certs::{LoadedCert, from_der_parts};

/// A certificate read back from disk.
#[derive(Clone)]
pub struct StoredCert {
    /// The DNS name it was ordered for.
    pub name: String,
    /// Key algorithm (a changed `acme.key_type` renews it).
    pub key_type: AcmeKeyType,
    /// Ready for the SNI resolver.
    pub cert: LoadedCert,
}

#[derive(Serialize, Deserialize)]
struct CertFile {
    name: String,
    key_type: AcmeKeyType,
    chain_pem: String,
    key_sealed: String,
}

/// Why something could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StoreError {
    /// The file concerned.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// The on-disk store.
pub struct CertStore {
    certs_dir: PathBuf,
    accounts_dir: PathBuf,
    key: Arc<StorageKey>,
}

impl CertStore {
    /// Opens (creating, 0700) `{acme_dir}/certs` and `{acme_dir}/accounts`.
    pub fn open(acme_dir: &Path, key: Arc<StorageKey>) -> Result<Self, StoreError> {
        let certs_dir = acme_dir.join("certs");
        let accounts_dir = acme_dir.join("accounts");
        for dir in [acme_dir, &certs_dir, &accounts_dir] {
            edge_private_fs::create_dir(dir).map_err(|e| err(dir, e.to_string()))?;
        }
        Ok(Self {
            certs_dir,
            accounts_dir,
            key,
        })
    }

    /// The storage key the store seals with now.
    pub(crate) fn key(&self) -> Arc<StorageKey> {
        self.key.clone()
    }

    /// Switches to a new storage key (a reload changed it), re-encrypting
    /// every stored private key and account. Returns (re-encrypted, failed);
    /// a file that fails stays as it was and is reported.
    pub(crate) fn rekey(&mut self, new_key: Arc<StorageKey>) -> (usize, usize) {
        let (mut done, mut failed) = (0, 0);
        let dirs = [&self.certs_dir, &self.accounts_dir];
        let files: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|d| d.filter_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "sealed"))
            .collect();
        for path in files {
            match self.rekey_file(&path, &new_key) {
                Ok(()) => done += 1,
                Err(e) => {
                    failed += 1;
                    tracing::error!(error = %e, "acme: could not re-encrypt a stored file");
                }
            }
        }
        self.key = new_key;
        (done, failed)
    }

    fn rekey_file(&self, path: &Path, new_key: &StorageKey) -> Result<(), StoreError> {
        let bytes = fs::read(path).map_err(|e| err(path, e.to_string()))?;
        if path.extension().is_some_and(|x| x == "sealed") {
            let context = account_context(path);
            let plain = self
                .key
                .open(&context, &bytes)
                .map_err(|e| err(path, e.to_string()))?;
            let sealed = new_key
                .seal(&context, &plain)
                .map_err(|e| err(path, e.to_string()))?;
            return write_atomic(path, &sealed);
        }
        let mut file: CertFile =
            serde_json::from_slice(&bytes).map_err(|e| err(path, e.to_string()))?;
        let context = format!("cert-key:{}", file.name);
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&file.key_sealed)
            .map_err(|e| err(path, e.to_string()))?;
        let plain = self
            .key
            .open(&context, &sealed)
            .map_err(|e| err(path, e.to_string()))?;
        let resealed = new_key
            .seal(&context, &plain)
            .map_err(|e| err(path, e.to_string()))?;
        file.key_sealed = base64::engine::general_purpose::STANDARD.encode(resealed);
        let json = serde_json::to_vec_pretty(&file).map_err(|e| err(path, e.to_string()))?;
        write_atomic(path, &json)
    }

    /// The certificate file of `name`.
    pub(crate) fn cert_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_file_name(name).map_err(|reason| err(&self.certs_dir, reason))?;
        Ok(self.certs_dir.join(format!("{name}.json")))
    }

    /// Stores a certificate chain (PEM) and its PKCS#8 private key (DER).
    pub fn save_cert(
        &self,
        name: &str,
        key_type: AcmeKeyType,
        chain_pem: &str,
        key_pkcs8_der: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.cert_path(name)?;
        let sealed = self
            .key
            .seal(&format!("cert-key:{name}"), key_pkcs8_der)
            .map_err(|e| err(&path, e.to_string()))?;
        let file = CertFile {
            name: name.to_string(),
            key_type,
            chain_pem: chain_pem.to_string(),
            key_sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| err(&path, e.to_string()))?;
        write_atomic(&path, &json)
    }

    /// Removes a stored certificate (missing is fine).
    pub(crate) fn remove_cert(&self, name: &str) -> Result<(), StoreError> {
        let path = self.cert_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path, e.to_string())),
        }
    }

    /// Loads every stored certificate on `threads` threads. Unreadable files
    /// are returned as errors next to the good ones; one bad file never hides
    /// the others.
    pub fn load_all(&self, threads: usize) -> (Vec<StoredCert>, Vec<StoreError>) {
        let entries: Vec<PathBuf> = match fs::read_dir(&self.certs_dir) {
            Ok(dir) => dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) => return (Vec::new(), vec![err(&self.certs_dir, e.to_string())]),
        };
        let threads = threads.clamp(1, 64);
        let chunk = entries.len().div_ceil(threads).max(1);
        let results: Vec<Result<StoredCert, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(chunk)
                .map(|paths| {
                    scope.spawn(move || {
                        paths
                            .iter()
                            .map(|p| self.load_cert_file(p))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(err(&self.certs_dir, "a loader thread panicked".into()))]
                    })
                })
                .collect()
        });
        let mut good = Vec::with_capacity(results.len());
        let mut bad = Vec::new();
        for r in results {
            match r {
                Ok(c) => good.push(c),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }

    fn load_cert_file(&self, path: &Path) -> Result<StoredCert, StoreError> {
        let bytes = fs::read(path).map_err(|e| err(path, e.to_string()))?;
        let file: CertFile = serde_json::from_slice(&bytes)
            .map_err(|e| err(path, format!("not a certificate file: {e}")))?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(file.name.as_str()) {
            return Err(err(
                path,
                format!("holds a certificate for {:?}", file.name),
            ));
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&file.key_sealed)
            .map_err(|e| err(path, format!("key_sealed is not base64: {e}")))?;
        let key_der = self
            .key
            .open(&format!("cert-key:{}", file.name), &sealed)
            .map_err(|e| err(path, format!("private key: {e}")))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(file.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| err(path, format!("chain_pem: {e}")))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
        let cert = from_der_parts(chain, key, &path.display().to_string())
            .map_err(|e| err(path, e.to_string()))?;
        Ok(StoredCert {
            name: file.name,
            key_type: file.key_type,
            cert,
        })
    }

    fn account_path(&self, directory_url: &str) -> PathBuf {
        let digest = Sha256::digest(directory_url.as_bytes());
        self.accounts_dir
            .join(format!("{}.sealed", hex::encode(&digest[..8])))
    }

    /// The stored account credentials (JSON) for a directory URL, if any.
    pub(crate) fn load_account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.account_path(directory_url);
        let sealed = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&path, e.to_string())),
        };
        self.key
            .open(&account_context(&path), &sealed)
            .map(Some)
            .map_err(|e| err(&path, e.to_string()))
    }

    /// Stores account credentials (JSON) for a directory URL.
    pub(crate) fn save_account(
        &self,
        directory_url: &str,
        credentials: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.account_path(directory_url);
        let sealed = self
            .key
            .seal(&account_context(&path), credentials)
            .map_err(|e| err(&path, e.to_string()))?;
        write_atomic(&path, &sealed)
    }
}

/// Sealing context of an account file: bound to its slot (the hash of the
/// directory URL in the file name).
fn account_context(path: &Path) -> String {
    let slot = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    format!("acme-account:{slot}")
}

fn err(path: &Path, reason: String) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        reason,
    }
}

/// Names become file names: allow only what a validated DNS name contains.
fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a usable certificate name"))
    }
}

/// Writes `bytes` to `path` through a synced 0600 temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    edge_private_fs::write_atomic_via(path, &path.with_extension("tmp"), bytes)
        .map_err(|e| err(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pair(name: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_der())
    }

    #[test]
    fn saves_encrypted_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StorageKey::from_bytes(&[3; 32]).unwrap());
        let store = CertStore::open(dir.path(), key).unwrap();
        let (chain, key_der) = pair("a.example.com");
        store
            .save_cert("a.example.com", AcmeKeyType::EcdsaP256, &chain, &key_der)
            .unwrap();
        let path = store.cert_path("a.example.com").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let on_disk = fs::read(&path).unwrap();
        assert!(
            !on_disk
                .windows(32)
                .any(|w| key_der.windows(32).any(|k| k == w))
        );
        assert!(!String::from_utf8_lossy(&on_disk).contains("PRIVATE KEY"));

        let (good, bad) = store.load_all(2);
        assert!(bad.is_empty(), "{:?}", bad.first().map(|e| e.to_string()));
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].cert.names, vec!["a.example.com"]);
    }

    #[test]
    fn bad_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StorageKey::from_bytes(&[3; 32]).unwrap());
        let store = CertStore::open(dir.path(), key).unwrap();
        let (chain, key_der) = pair("b.example.com");
        store
            .save_cert("b.example.com", AcmeKeyType::EcdsaP256, &chain, &key_der)
            .unwrap();
        // A file renamed to another name's slot is refused.
        fs::copy(
            store.cert_path("b.example.com").unwrap(),
            dir.path().join("certs/c.example.com.json"),
        )
        .unwrap();
        fs::write(dir.path().join("certs/junk.json"), b"{").unwrap();
        let (good, bad) = store.load_all(4);
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 2);

        let other = CertStore::open(
            dir.path(),
            Arc::new(StorageKey::from_bytes(&[4; 32]).unwrap()),
        )
        .unwrap();
        let (good, bad) = other.load_all(1);
        assert!(good.is_empty());
        assert!(
            bad.iter()
                .any(|e| e.reason.contains("different storage key"))
        );
    }

    #[test]
    fn accounts_round_trip_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StorageKey::from_bytes(&[5; 32]).unwrap());
        let store = CertStore::open(dir.path(), key).unwrap();
        assert!(store.load_account("https://ca/dir").unwrap().is_none());
        store.save_account("https://ca/dir", b"{\"id\":1}").unwrap();
        assert_eq!(
            store.load_account("https://ca/dir").unwrap().unwrap(),
            b"{\"id\":1}"
        );
        assert!(store.load_account("https://other/dir").unwrap().is_none());
        assert!(store.cert_path("../etc/passwd").is_err());
    }

    #[test]
    fn rekey_re_encrypts_certificates_and_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let old = Arc::new(StorageKey::from_bytes(&[5; 32]).unwrap());
        let new = Arc::new(StorageKey::from_bytes(&[6; 32]).unwrap());
        let mut store = CertStore::open(dir.path(), old).unwrap();
        let (chain, key_der) = pair("d.example.com");
        store
            .save_cert("d.example.com", AcmeKeyType::EcdsaP256, &chain, &key_der)
            .unwrap();
        store.save_account("https://ca/dir", b"creds").unwrap();
        assert_eq!(store.rekey(new.clone()), (2, 0));
        let fresh = CertStore::open(dir.path(), new).unwrap();
        let (good, bad) = fresh.load_all(1);
        assert_eq!((good.len(), bad.len()), (1, 0));
        assert_eq!(
            fresh.load_account("https://ca/dir").unwrap().unwrap(),
            b"creds"
        );
    }
}
