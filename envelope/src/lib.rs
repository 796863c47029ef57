//! Event wire format and envelope encryption shared by the edge and the backend.
//!
//! * [`wire`] — the compact, versioned plaintext encoding of an [`EventRecord`].
//! * [`keys`] — backend X25519 key pairs, key ids, key files and the [`Keyring`].
//! * [`seal`] — the edge side: [`Sealer`] encrypts events into envelopes.
//! * [`open`] — the backend side: [`Opener`] decrypts them.
//!
//! Envelopes use a per-edge random data key (ChaCha20-Poly1305) that is
//! wrapped once per rotation with HPKE (RFC 9180) to the backend public key.
//! The byte layout and procedures are documented in `docs/envelope.md`.

pub mod keys;
pub mod open;
pub mod record;
pub mod seal;
mod suite;
pub mod wire;

pub use keys::{KeyError, KeyId, Keyring, PrivateKey, PublicKey};
pub use open::{EnvelopeHeader, OpenError, Opener, peek_header};
pub use record::{BrowserFamily, DeviceClass, EventRecord, OsFamily, RECORD_VERSION, Utm};
pub use seal::{RotationPolicy, SealError, Sealer};
pub use suite::{ENVELOPE_MAGIC, ENVELOPE_OVERHEAD};
pub use wire::{DecodeError, decode_record, encode_record};

/// Version byte written at offset 4 of every envelope by this build.
pub const ENVELOPE_VERSION: u8 = 1;
