//! Caps on open connections, checked at accept.
//!
//! A [`Slot`] is one admitted connection of a listener; it may also hold a
//! place under its client address ([`Slot::admit_client`]). Dropping it
//! frees both and updates `edge_connections_open{listener}`. A refused
//! connection is closed before any byte is read or written and counted in
//! `edge_connections_refused_total{listener,reason}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use super::ListenerKind;
use crate::metrics::METRICS;
use edge_ratelimit::IpKey;

/// Why a connection was refused, the `reason` label of `edge_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The listener holds its maximum of open connections.
    #[error("listener connection limit reached")]
    ListenerLimit,
    /// The client address holds its maximum of open connections.
    #[error("client connection limit reached")]
    ClientLimit,
}

impl Refusal {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::ListenerLimit => "listener_limit",
            Self::ClientLimit => "client_limit",
        }
    }
}

/// Open connections per listener and per (listener, client key).
struct Table {
    open: [AtomicUsize; 3],
    clients: Mutex<HashMap<(usize, IpKey), usize>>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| Table {
    open: [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ],
    clients: Mutex::new(HashMap::new()),
});

/// One admitted connection; frees its places when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    listener: ListenerKind,
    client: Option<IpKey>,
}

/// Admits a new connection of `listener` when it holds fewer than `cap`.
pub(crate) fn admit(listener: ListenerKind, cap: usize) -> Result<Slot, Refusal> {
    let open = &TABLE.open[listener.index()];
    let admitted = open
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok();
    if !admitted {
        return Err(refused(listener, Refusal::ListenerLimit));
    }
    gauge(listener).inc();
    Ok(Slot {
        listener,
        client: None,
    })
}

impl Slot {
    /// Takes a place under `ip` (IPv6 grouped by `ipv6_prefix_len` bits)
    /// when that client holds fewer than `cap` connections of this listener.
    pub(crate) fn admit_client(
        &mut self,
        ip: IpAddr,
        ipv6_prefix_len: u8,
        cap: usize,
    ) -> Result<(), Refusal> {
        if self.client.is_some() {
            return Ok(());
        }
        let key = IpKey::new(ip, ipv6_prefix_len);
        let mut clients = TABLE.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let count = clients.entry((self.listener.index(), key)).or_insert(0);
        if *count >= cap {
            if *count == 0 {
                clients.remove(&(self.listener.index(), key));
            }
            return Err(refused(self.listener, Refusal::ClientLimit));
        }
        *count += 1;
        self.client = Some(key);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            let mut clients = TABLE.clients.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = (self.listener.index(), key);
            if let Some(count) = clients.get_mut(&entry) {
                *count -= 1;
                if *count == 0 {
                    clients.remove(&entry);
                }
            }
        }
        TABLE.open[self.listener.index()].fetch_sub(1, Ordering::AcqRel);
        gauge(self.listener).dec();
    }
}

/// Open connections of `listener` right now.
#[cfg(test)]
fn open(listener: ListenerKind) -> usize {
    TABLE.open[listener.index()].load(Ordering::Acquire)
}

fn gauge(listener: ListenerKind) -> prometheus::IntGauge {
    METRICS
        .connections
        .open
        .with_label_values(&[listener.as_label()])
}

fn refused(listener: ListenerKind, why: Refusal) -> Refusal {
    METRICS
        .connections
        .refused
        .with_label_values(&[listener.as_label(), why.as_label()])
        .inc();
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is process-wide: this test alone uses the admin listener.
    #[test]
    fn caps_per_listener_and_client_are_enforced_and_released() {
        let l = ListenerKind::Admin;
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();

        let mut s1 = admit(l, 3).unwrap();
        s1.admit_client(a, 64, 1).unwrap();
        let mut s2 = admit(l, 3).unwrap();
        assert_eq!(
            s2.admit_client(same_prefix, 64, 1),
            Err(Refusal::ClientLimit)
        );
        s2.admit_client(other, 64, 1).unwrap();
        let s3 = admit(l, 3).unwrap();
        assert_eq!(admit(l, 3).unwrap_err(), Refusal::ListenerLimit);
        assert_eq!(open(l), 3);
        drop(s1);
        let mut s4 = admit(l, 3).unwrap();
        s4.admit_client(same_prefix, 64, 1).unwrap();
        drop((s2, s3, s4));
        assert_eq!(open(l), 0);
        assert!(TABLE.clients.lock().unwrap().is_empty());
    }
}
