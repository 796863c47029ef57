//! The fleet's shared ACME state in PostgreSQL.
//!
//! Every edge of a fleet points at the same database (and schema). The store
//! holds what must be the same on every edge: certificates (private keys
//! only ever sealed by the caller with the storage key), the ACME account,
//! on-demand approvals, pending challenge responses, backoff and issuance
//! limits, and one lease per name so exactly one edge orders a name at a time.
//!
//! Plain types in, plain types out: the edge seals, parses and serves; this
//! crate only stores and coordinates. It uses `tokio-postgres` rather than
//! sqlx because the `edge` binary must not link the backend's storage stack
//! (tests/tests/crate_deps.rs), and because LISTEN/NOTIFY comes through the
//! connection's asynchronous messages ([`events`]).
//!
//! Modules: [`lease`] (fenced per-name leases), [`certs`] (certificates),
//! [`challenges`] (HTTP-01 and TLS-ALPN-01 responses), [`limits`] (backoff
//! and issuance limits), [`account`] (account credentials and on-demand
//! approvals), [`events`] (LISTEN for changes made by other edges),
//! [`rekey`] (re-sealing rows after a storage-key rotation), [`retention`]
//! (deleting rows of names no edge covers any more).

pub mod account;
pub mod certs;
pub mod challenges;
pub mod events;
pub mod lease;
pub mod limits;
pub mod rekey;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, RwLock};
use tokio_postgres::{Client, NoTls};

pub use certs::CertRow;
pub use events::{FleetEvent, listen};
pub use lease::Lease;
pub use limits::{Backoff, Charge, LimitScope};

/// The schema, created and upgraded idempotently at start, in order (each
/// file only `CREATE ... IF NOT EXISTS` / `ADD COLUMN IF NOT EXISTS`, so an
/// older edge and a newer one can share a schema during a rolling upgrade).
const MIGRATIONS: [&str; 3] = [
    include_str!("../migrations/001_shared_acme.sql"),
    include_str!("../migrations/002_key_check.sql"),
    include_str!("../migrations/003_wanted.sql"),
];
/// Advisory lock key serialising concurrent migrations ("edgeacme").
const MIGRATION_LOCK: i64 = 0x6564_6765_6163_6d65;

/// Where the shared store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// libpq-style connection string or URL (`postgres://user@host/db`).
    pub url: String,
    /// Schema holding the tables (created if missing); lower-case letters,
    /// digits and `_`, starting with a letter or `_`, at most 63 bytes.
    pub schema: String,
    /// Bound on connecting and on each operation.
    pub timeout: Duration,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetStoreError {
    /// The options are unusable.
    #[error("invalid shared store settings: {0}")]
    Settings(String),
    /// PostgreSQL refused or failed the operation.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No answer within the configured bound.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// A write under a lease that is no longer held (expired, taken over):
    /// refused so a stale holder cannot overwrite a newer result.
    #[error("the lease on {name} (fence {fence}) is no longer held")]
    StaleLease {
        /// The name.
        name: String,
        /// The fencing token the writer presented.
        fence: i64,
    },
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, FleetStoreError>;

/// A connection to the shared store; cheap to share (`Arc`), reconnects when
/// its connection dropped.
pub struct FleetStore {
    options: StoreOptions,
    config: tokio_postgres::Config,
    client: RwLock<Arc<Client>>,
    reconnect: Mutex<()>,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only the schema is shown.
        f.debug_struct("FleetStore")
            .field("schema", &self.options.schema)
            .finish_non_exhaustive()
    }
}

impl FleetStore {
    /// Connects, creates the schema and its tables if missing, and returns
    /// the store.
    pub async fn connect(options: StoreOptions) -> Result<Self> {
        check_schema(&options.schema)?;
        let config = pg_config(&options)?;
        let client = open(&config, options.timeout).await?;
        let migrate = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
             CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}; \
             {migrations}\nCOMMIT;",
            schema = options.schema,
            migrations = MIGRATIONS.join("\n"),
        );
        timed(options.timeout, client.batch_execute(&migrate)).await?;
        Ok(Self {
            options,
            config,
            client: RwLock::new(Arc::new(client)),
            reconnect: Mutex::new(()),
        })
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The NOTIFY channel of this schema (other schemas do not hear it).
    pub fn channel(&self) -> String {
        channel(&self.options.schema)
    }

    /// A live client, reconnecting once when the connection dropped.
    pub(crate) async fn client(&self) -> Result<Arc<Client>> {
        let current = self.client.read().await.clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let _one = self.reconnect.lock().await;
        let current = self.client.read().await.clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = Arc::new(open(&self.config, self.options.timeout).await?);
        *self.client.write().await = fresh.clone();
        Ok(fresh)
    }

    /// Runs `fut` within the operation bound.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        timed(self.options.timeout, fut).await
    }

    /// Drops the schema and everything in it: the whole fleet's shared
    /// state. For throw-away schemas of tests and benchmarks.
    pub async fn drop_schema(&self) -> Result<()> {
        let client = self.client().await?;
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.options.schema);
        self.timed(client.batch_execute(&sql)).await
    }

    /// Whether PostgreSQL answers (a `SELECT 1` within the bound).
    pub async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        self.timed(client.simple_query("SELECT 1")).await?;
        Ok(())
    }
}

async fn timed<T>(
    bound: Duration,
    fut: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r.map_err(FleetStoreError::Db),
        Err(_) => Err(FleetStoreError::Timeout(bound)),
    }
}

/// The connection settings: the URL with this schema as the search path.
pub(crate) fn pg_config(options: &StoreOptions) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = options
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| FleetStoreError::Settings(e.to_string()))?;
    config
        .options(format!("-c search_path={}", options.schema))
        .connect_timeout(options.timeout)
        .application_name("edge-acme-shared");
    Ok(config)
}

/// Connects and drives the connection on a task of its own.
async fn open(config: &tokio_postgres::Config, bound: Duration) -> Result<Client> {
    let (client, connection) = timed(bound, config.connect(NoTls)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "shared ACME store: connection closed");
        }
    });
    Ok(client)
}

pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}_changes")
}

fn check_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FleetStoreError::Settings(format!(
            "schema {schema:?}: use lower-case letters, digits and _ (at most 63)"
        )))
    }
}

#[cfg(test)]
pub(crate) mod testdb;
