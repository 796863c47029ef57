//! What a handshake came to, and the task-local slot through which the
//! certificate resolver ([`crate::sni`]) tells the edge's accept loop
//! (`proxy/src/tls/accept.rs`) what it decided. Both depend on this module;
//! neither on the other for it.

use std::cell::Cell;

/// The outcome of one handshake, the `outcome` label of `edge_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Completed; the connection carries HTTP.
    Ok,
    /// No SNI in the ClientHello: refused before key exchange.
    NoSni,
    /// SNI names nothing this edge serves or may order: refused before key exchange.
    UnknownSni,
    /// SNI is authorised but its certificate is still being obtained.
    NoCertYet,
    /// A CA's TLS-ALPN-01 validation handshake, answered and closed.
    AlpnChallenge,
    /// Failed for another reason (protocol error, client gave up).
    Failed,
    /// The client did not finish within `connections.tls_handshake_timeout_ms`.
    Timeout,
    /// `acme-tls/1` offered with other protocols (none of them HTTP), or
    /// alone with no challenge pending for the name: refused, never
    /// negotiated with the site's certificate.
    AlpnRefused,
}

impl HandshakeOutcome {
    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoSni => "no_sni",
            Self::UnknownSni => "unknown_sni",
            Self::NoCertYet => "no_cert_yet",
            Self::AlpnChallenge => "alpn_challenge",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::AlpnRefused => "alpn_refused",
        }
    }
}

tokio::task_local! {
    /// What the certificate resolver decided during this task's handshake;
    /// rustls calls the resolver synchronously inside the handshake future,
    /// so the connection task can read it afterwards.
    pub static RESOLVER_OUTCOME: Cell<Option<HandshakeOutcome>>;
}

/// Records the resolver's verdict for the handshake running on this task.
pub(crate) fn note_outcome(outcome: HandshakeOutcome) {
    // Outside a handshake task (unit tests) there is nothing to record.
    let _ = RESOLVER_OUTCOME.try_with(|cell| cell.set(Some(outcome)));
}
