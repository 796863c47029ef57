//! LISTEN for changes made by other edges, on a connection of its own.
//!
//! [`listen`] returns a channel of [`FleetEvent`]s and keeps a session open
//! in the background, reconnecting with a growing pause after failures.
//! After each (re)connection it sends [`FleetEvent::Resync`]: notifications
//! sent while it was away are lost, so the receiver polls for what changed
//! ([`crate::FleetStore::certs_since`]). It stops when the receiver is dropped.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::{FleetStoreError, Result, StoreOptions, channel, pg_config};

/// A change another edge (or this one) made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    /// The certificate of this name was written.
    Cert(String),
    /// The certificate of this name was deleted.
    Gone(String),
    /// An HTTP-01 response was published for this token.
    Http(String),
    /// A TLS-ALPN-01 response was published for this name.
    Alpn(String),
    /// The `ask` endpoint approved this on-demand name (on some edge).
    Approval(String),
    /// The `ask` endpoint refused this on-demand name (on some edge): its
    /// approval was deleted.
    Unapproved(String),
    /// (Re)connected: notifications may have been missed; poll.
    Resync,
    /// The listening connection failed; a reconnection follows.
    Down,
}

impl FleetEvent {
    fn parse(payload: &str) -> Option<FleetEvent> {
        let (kind, value) = payload.split_once(':')?;
        let value = value.to_string();
        match kind {
            "cert" => Some(FleetEvent::Cert(value)),
            "gone" => Some(FleetEvent::Gone(value)),
            "http" => Some(FleetEvent::Http(value)),
            "alpn" => Some(FleetEvent::Alpn(value)),
            "approval" => Some(FleetEvent::Approval(value)),
            "unapproved" => Some(FleetEvent::Unapproved(value)),
            _ => None,
        }
    }
}

const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Starts listening to the schema's channel (on the current tokio runtime).
pub fn listen(options: StoreOptions) -> Result<mpsc::Receiver<FleetEvent>> {
    let mut config = pg_config(&options)?;
    config.keepalives_idle(Duration::from_secs(30));
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(250);
        loop {
            match session(&config, &options, &tx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "shared ACME store: listening connection lost");
                    if tx.send(FleetEvent::Down).await.is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    });
    Ok(rx)
}

/// One listening session; Ok when the receiver is gone.
async fn session(
    config: &tokio_postgres::Config,
    options: &StoreOptions,
    tx: &mpsc::Sender<FleetEvent>,
) -> Result<()> {
    let (client, mut connection) = tokio::time::timeout(options.timeout, config.connect(NoTls))
        .await
        .map_err(|_| FleetStoreError::Timeout(options.timeout))??;
    let (note_tx, mut note_rx) = mpsc::unbounded_channel::<String>();
    let pump = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if note_tx.send(n.payload().to_string()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let listen = format!("LISTEN {}", channel(&options.schema));
    tokio::time::timeout(options.timeout, client.batch_execute(&listen))
        .await
        .map_err(|_| FleetStoreError::Timeout(options.timeout))??;
    if tx.send(FleetEvent::Resync).await.is_err() {
        return Ok(());
    }
    while let Some(payload) = note_rx.recv().await {
        if let Some(event) = FleetEvent::parse(&payload)
            && tx.send(event).await.is_err()
        {
            return Ok(());
        }
    }
    drop(client);
    match pump.await {
        Ok(Err(e)) => Err(FleetStoreError::Db(e)),
        _ => Err(FleetStoreError::Settings(
            "the listening connection ended".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::testdb::{TestDb, put_test_cert};

    use super::*;

    async fn next(rx: &mut mpsc::Receiver<FleetEvent>) -> FleetEvent {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no event within 10 s")
            .expect("listener ended")
    }

    #[tokio::test]
    async fn writes_are_heard_by_other_connections() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut rx = listen(db.options.clone()).unwrap();
        assert_eq!(next(&mut rx).await, FleetEvent::Resync);
        put_test_cert(&store, "a.example", b"sealed", "k").await;
        assert_eq!(next(&mut rx).await, FleetEvent::Cert("a.example".into()));
        store
            .put_http("tok", "a.example", "k", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(next(&mut rx).await, FleetEvent::Http("tok".into()));
        store
            .put_alpn("a.example", &[1; 32], Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(next(&mut rx).await, FleetEvent::Alpn("a.example".into()));
        store.remove_cert("a.example").await.unwrap();
        assert_eq!(next(&mut rx).await, FleetEvent::Gone("a.example".into()));
        store.put_approval("o.example", 7).await.unwrap();
        assert_eq!(
            next(&mut rx).await,
            FleetEvent::Approval("o.example".into())
        );
        store.remove_approval("o.example").await.unwrap();
        assert_eq!(
            next(&mut rx).await,
            FleetEvent::Unapproved("o.example".into())
        );
        // Another schema's channel is not heard.
        let other = TestDb::new().await;
        let other_store = other.store().await;
        put_test_cert(&other_store, "b.example", b"sealed", "k").await;
        store
            .put_http("tok2", "a.example", "k", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(next(&mut rx).await, FleetEvent::Http("tok2".into()));
        other.drop().await;
        db.drop().await;
    }
}
