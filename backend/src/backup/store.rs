//! Where objects go: a local directory (embedded default) or an
//! S3-compatible bucket, both through `object_store`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// How to reach the store.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A directory; objects go under `DIR/backup/`.
    Local {
        /// The data directory (the store root is its `backup/` subdirectory).
        data_dir: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// S3-compatible storage.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name (must exist).
    pub bucket: String,
    /// Key prefix inside the bucket (e.g. `backup`); empty for none.
    pub prefix: String,
    /// Endpoint URL for non-AWS servers (path-style requests are used).
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id (else the builder's environment/instance credentials).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
    /// Allow `http://` endpoints (always allowed for loopback endpoints).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Whether an endpoint URL points at a loopback host.
pub fn is_loopback_endpoint(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An opened store: objects are addressed by keys relative to its prefix.
#[derive(Debug, Clone)]
pub struct BackupStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    describe: String,
}

impl BackupStore {
    /// Opens (for a local directory: creates) the store.
    pub fn open(cfg: &StoreConfig) -> anyhow::Result<BackupStore> {
        match cfg {
            StoreConfig::Local { data_dir } => {
                let root = data_dir.join("backup");
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("creating backup directory {}", root.display()))?;
                let fs = LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("opening backup directory {}", root.display()))?
                    .with_fsync(true);
                Ok(BackupStore {
                    inner: Arc::new(fs),
                    prefix: None,
                    describe: format!("directory {}", root.display()),
                })
            }
            StoreConfig::S3(s3) => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region);
                if let Some(endpoint) = &s3.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(s3.allow_http || is_loopback_endpoint(endpoint))
                        .with_virtual_hosted_style_request(false);
                } else if s3.allow_http {
                    b = b.with_allow_http(true);
                }
                if let Some(id) = &s3.access_key_id {
                    b = b.with_access_key_id(id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    b = b.with_secret_access_key(secret);
                }
                if let Some(token) = &s3.session_token {
                    b = b.with_token(token);
                }
                let store = b
                    .build()
                    .with_context(|| format!("configuring S3 bucket {}", s3.bucket))?;
                let prefix = s3.prefix.trim_matches('/');
                Ok(BackupStore {
                    inner: Arc::new(store),
                    prefix: (!prefix.is_empty()).then(|| Path::from(prefix)),
                    describe: format!(
                        "s3://{}/{}{}",
                        s3.bucket,
                        prefix,
                        s3.endpoint
                            .as_deref()
                            .map(|e| format!(" at {e}"))
                            .unwrap_or_default()
                    ),
                })
            }
        }
    }

    /// Wraps any `object_store` implementation (tests, embedding).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, prefix: &str) -> BackupStore {
        let prefix = prefix.trim_matches('/');
        BackupStore {
            describe: format!("{inner}/{prefix}"),
            inner,
            prefix: (!prefix.is_empty()).then(|| Path::from(prefix)),
        }
    }

    /// Human-readable location, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn path(&self, key: &str) -> Path {
        match &self.prefix {
            None => Path::from(key),
            Some(p) => Path::from(format!("{p}/{key}")),
        }
    }

    fn key_of(&self, path: &Path) -> String {
        let s = path.as_ref();
        match &self.prefix {
            None => s.to_string(),
            Some(p) => s
                .strip_prefix(p.as_ref())
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(s)
                .to_string(),
        }
    }

    /// Stores `bytes` under `key`, replacing any previous object. Returns
    /// only once the store reports the object durable (local: file and
    /// directory fsynced; S3: PUT acknowledged).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .with_context(|| format!("storing {key} in {}", self.describe))?;
        Ok(())
    }

    /// Reads an object.
    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let r = self
            .inner
            .get(&self.path(key))
            .await
            .with_context(|| format!("reading {key} from {}", self.describe))?;
        r.bytes()
            .await
            .with_context(|| format!("reading {key} from {}", self.describe))
    }

    /// Keys (relative to the prefix) and sizes of every object under `under`
    /// (`""` for all), sorted by key.
    pub async fn list(&self, under: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let under = under.trim_matches('/');
        let prefix = match (&self.prefix, under.is_empty()) {
            (None, true) => None,
            (None, false) => Some(Path::from(under)),
            (Some(p), true) => Some(p.clone()),
            (Some(p), false) => Some(Path::from(format!("{p}/{under}"))),
        };
        let metas: Vec<_> = self
            .inner
            .list(prefix.as_ref())
            .try_collect()
            .await
            .with_context(|| format!("listing {under:?} in {}", self.describe))?;
        let mut out: Vec<_> = metas
            .into_iter()
            .map(|m| (self.key_of(&m.location), m.size))
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        for e in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://[::1]:9000",
            "127.0.0.5",
            "http://user@127.0.0.1",
        ] {
            assert!(is_loopback_endpoint(e), "{e}");
        }
        for e in [
            "http://10.0.0.1:9000",
            "https://s3.example.com",
            "http://[2001:db8::1]",
        ] {
            assert!(!is_loopback_endpoint(e), "{e}");
        }
    }

    #[tokio::test]
    async fn local_store_puts_lists_and_gets_under_data_dir_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&StoreConfig::Local {
            data_dir: dir.path().to_path_buf(),
        })
        .unwrap();
        store
            .put("t/2026-01-01/a.bin", b"one".to_vec())
            .await
            .unwrap();
        store
            .put("t/2026-01-01/a.bin", b"two".to_vec())
            .await
            .unwrap();
        store.put("u/b.bin", b"3".to_vec()).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("backup/t/2026-01-01/a.bin")).unwrap(),
            b"two"
        );
        assert_eq!(
            store.list("").await.unwrap(),
            vec![
                ("t/2026-01-01/a.bin".to_string(), 3),
                ("u/b.bin".to_string(), 1)
            ]
        );
        assert_eq!(store.list("t").await.unwrap().len(), 1);
        assert_eq!(&store.get("u/b.bin").await.unwrap()[..], b"3");
        assert!(store.get("missing").await.is_err());
    }

    #[tokio::test]
    async fn prefixed_store_hides_the_prefix() {
        let mem = Arc::new(object_store::memory::InMemory::new());
        let store = BackupStore::from_object_store(mem.clone(), "backup/");
        store.put("t/x", b"1".to_vec()).await.unwrap();
        assert!(mem.head(&Path::from("backup/t/x")).await.is_ok());
        assert_eq!(store.list("").await.unwrap(), vec![("t/x".to_string(), 1)]);
        assert_eq!(store.list("t").await.unwrap(), vec![("t/x".to_string(), 1)]);
    }
}
