//! The edge side: encrypts events into envelopes only the backend can open.
//!
//! A [`Sealer`] holds a random data key (DEK) that it wraps once with HPKE
//! to the backend's public key; each event is then a single
//! ChaCha20-Poly1305 encryption under the DEK with a counter nonce. The DEK
//! is replaced when its event budget or age runs out (see
//! [`RotationPolicy`]). The layout is documented in `docs/envelope.md`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hpke::{OpModeS, Serializable as _};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::ENVELOPE_VERSION;
use crate::keys::{KeyId, PublicKey};
use crate::record::EventRecord;
use crate::suite::{
    CIPHERTEXT_AT, DEK_ID_AT, DEK_ID_LEN, DEK_LEN, ENC_AT, ENC_LEN, ENVELOPE_MAGIC, HPKE_INFO,
    HpkeAead, KEY_ID_AT, Kdf, Kem, NONCE_AT, TAG_LEN, VERSION_AT, WRAPPED_AT, WRAPPED_LEN,
    nonce_for, with_event_aad,
};
use crate::wire::encode_record;

/// Why sealing failed.
#[derive(Debug, Error)]
pub enum SealError {
    /// The rotation policy cannot be used.
    #[error("invalid rotation policy: {0}")]
    InvalidPolicy(&'static str),
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// HPKE could not wrap the data key to the recipient public key.
    #[error("could not wrap data key for recipient: {0}")]
    Wrap(hpke::HpkeError),
    /// The event AEAD refused the input (plaintext too large).
    #[error("event encryption failed")]
    Encrypt,
}

impl SealError {
    /// Short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SealError::InvalidPolicy(_) => "invalid_policy",
            SealError::Rng => "rng",
            SealError::Wrap(_) => "wrap",
            SealError::Encrypt => "encrypt",
        }
    }
}

/// When a [`Sealer`] replaces its data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Replace the data key once it is older than this. Must be non-zero.
    pub max_age: Duration,
    /// Replace the data key after this many events. Must be at least 1.
    pub max_events: u64,
}

impl Default for RotationPolicy {
    /// One hour or one million events, whichever comes first.
    fn default() -> Self {
        RotationPolicy {
            max_age: Duration::from_secs(3600),
            max_events: 1_000_000,
        }
    }
}

impl RotationPolicy {
    fn validate(&self) -> Result<(), SealError> {
        if self.max_events == 0 {
            return Err(SealError::InvalidPolicy("max_events must be at least 1"));
        }
        if self.max_age.is_zero() {
            return Err(SealError::InvalidPolicy("max_age must be non-zero"));
        }
        Ok(())
    }
}

/// One data key and everything precomputed for it.
struct DataKey {
    /// Random id, carried in every envelope under this key.
    id: [u8; DEK_ID_LEN],
    /// The event AEAD key.
    key: LessSafeKey,
    /// Envelope bytes before the nonce: magic, version, key id, dek id,
    /// HPKE enc, wrapped DEK. Also the start of the event AEAD's aad.
    prefix: [u8; NONCE_AT],
    /// When the key was made.
    created: Instant,
    /// Next nonce counter value.
    counter: AtomicU64,
}

impl DataKey {
    fn generate(recipient: &PublicKey, rng: &SystemRandom) -> Result<DataKey, SealError> {
        let mut id = [0u8; DEK_ID_LEN];
        rng.fill(&mut id).map_err(|_| SealError::Rng)?;
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        rng.fill(dek.as_mut_slice()).map_err(|_| SealError::Rng)?;

        let mut prefix = [0u8; NONCE_AT];
        prefix[..VERSION_AT].copy_from_slice(&ENVELOPE_MAGIC);
        prefix[VERSION_AT] = ENVELOPE_VERSION;
        prefix[KEY_ID_AT..DEK_ID_AT].copy_from_slice(recipient.key_id().as_bytes());
        prefix[DEK_ID_AT..ENC_AT].copy_from_slice(&id);

        let (enc, wrapped) = hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(
            &OpModeS::Base,
            recipient.hpke(),
            HPKE_INFO,
            dek.as_slice(),
            &prefix[..ENC_AT],
        )
        .map_err(SealError::Wrap)?;
        if wrapped.len() != WRAPPED_LEN {
            return Err(SealError::Wrap(hpke::HpkeError::IncorrectInputLength(
                WRAPPED_LEN,
                wrapped.len(),
            )));
        }
        enc.write_exact(&mut prefix[ENC_AT..ENC_AT + ENC_LEN]);
        prefix[WRAPPED_AT..NONCE_AT].copy_from_slice(&wrapped);

        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, dek.as_slice()).map_err(|_| SealError::Rng)?;
        Ok(DataKey {
            id,
            key: LessSafeKey::new(unbound),
            prefix,
            created: Instant::now(),
            counter: AtomicU64::new(0),
        })
    }
}

/// Seals events for one backend public key. `Send + Sync`; share it by reference.
///
/// The hot path takes no lock: it loads the current data key, bumps its
/// counter and runs one AEAD. A mutex is only taken to rotate the data key.
pub struct Sealer {
    recipient: PublicKey,
    policy: RotationPolicy,
    rng: SystemRandom,
    current: ArcSwap<DataKey>,
    rotation: Mutex<()>,
}

impl Sealer {
    /// Creates a sealer for `recipient` and makes its first data key.
    ///
    /// # Panics
    ///
    /// HPKE draws its ephemeral key from the OS RNG and panics if that fails
    /// (this applies to every data key rotation).
    pub fn new(recipient: PublicKey, policy: RotationPolicy) -> Result<Sealer, SealError> {
        policy.validate()?;
        let rng = SystemRandom::new();
        let first = DataKey::generate(&recipient, &rng)?;
        Ok(Sealer {
            recipient,
            policy,
            rng,
            current: ArcSwap::from_pointee(first),
            rotation: Mutex::new(()),
        })
    }

    /// The id of the backend key envelopes are sealed to.
    pub fn recipient_key_id(&self) -> KeyId {
        self.recipient.key_id()
    }

    /// The rotation policy in force.
    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// The id of the data key currently used (for metrics and tests).
    pub fn current_data_key_id(&self) -> [u8; 16] {
        self.current.load().id
    }

    /// Replaces the data key now, regardless of the policy.
    pub fn rotate_now(&self) -> Result<(), SealError> {
        self.rotate(None).map(drop)
    }

    /// Encodes `record` with [`encode_record`] and seals it for `site_id`.
    pub fn seal(&self, site_id: &str, record: &EventRecord) -> Result<Vec<u8>, SealError> {
        self.seal_bytes(site_id, &encode_record(record))
    }

    /// Seals arbitrary plaintext bytes for `site_id`.
    ///
    /// The site id is bound as associated data: the envelope only opens
    /// with the same site id.
    pub fn seal_bytes(&self, site_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        // Fast path: no lock and no reference-count traffic.
        let stale = {
            let current = self.current.load();
            let counter = current.counter.fetch_add(1, Ordering::Relaxed);
            if counter < self.policy.max_events && current.created.elapsed() <= self.policy.max_age
            {
                return seal_with(&current, counter, site_id, plaintext);
            }
            current.id
        };
        self.seal_after_rotation(stale, site_id, plaintext)
    }

    /// Slow path: the current data key is spent or too old.
    fn seal_after_rotation(
        &self,
        mut stale: [u8; DEK_ID_LEN],
        site_id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        loop {
            // A key just obtained from a rotation is not re-checked for age,
            // so a tiny max_age cannot make us spin.
            let fresh = self.rotate(Some(stale))?;
            let counter = fresh.counter.fetch_add(1, Ordering::Relaxed);
            if counter < self.policy.max_events {
                return seal_with(&fresh, counter, site_id, plaintext);
            }
            stale = fresh.id;
        }
    }

    /// Installs a new data key unless `stale` names a key that another
    /// thread has already replaced; returns the key now current.
    fn rotate(&self, stale: Option<[u8; DEK_ID_LEN]>) -> Result<Arc<DataKey>, SealError> {
        let _lock = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        if stale.is_some_and(|id| id != current.id) {
            return Ok(current);
        }
        let next = Arc::new(DataKey::generate(&self.recipient, &self.rng)?);
        self.current.store(Arc::clone(&next));
        Ok(next)
    }
}

/// Builds one envelope under `dk` with nonce number `counter`.
fn seal_with(
    dk: &DataKey,
    counter: u64,
    site_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce = nonce_for(counter);
    let mut out = Vec::with_capacity(CIPHERTEXT_AT + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&dk.prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = with_event_aad(&dk.prefix, site_id, |aad| {
        dk.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[CIPHERTEXT_AT..],
        )
    })
    .map_err(|_| SealError::Encrypt)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("recipient", &self.recipient.key_id())
            .field("policy", &self.policy)
            .field("data_key_id", &hex::encode(self.current_data_key_id()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::suite::ENVELOPE_OVERHEAD;
    use crate::wire::testing::sample_record;

    fn sealer(policy: RotationPolicy) -> (PrivateKey, Sealer) {
        let sk = PrivateKey::generate();
        let sealer = Sealer::new(sk.public_key(), policy).unwrap();
        (sk, sealer)
    }

    #[test]
    fn sealer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Sealer>();
    }

    #[test]
    fn default_policy() {
        let p = RotationPolicy::default();
        assert_eq!(p.max_age, Duration::from_secs(3600));
        assert_eq!(p.max_events, 1_000_000);
    }

    #[test]
    fn rejects_degenerate_policies() {
        let pk = PrivateKey::generate().public_key();
        let err = Sealer::new(
            pk.clone(),
            RotationPolicy {
                max_events: 0,
                ..RotationPolicy::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), "invalid_policy");
        let err = Sealer::new(
            pk,
            RotationPolicy {
                max_age: Duration::ZERO,
                ..RotationPolicy::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), "invalid_policy");
    }

    #[test]
    fn header_fields_and_length() {
        let (sk, sealer) = sealer(RotationPolicy::default());
        let env = sealer.seal_bytes("site", b"hello").unwrap();
        assert_eq!(env.len(), ENVELOPE_OVERHEAD + 5);
        assert_eq!(&env[..4], b"EDGE");
        assert_eq!(env[4], 1);
        assert_eq!(&env[5..13], sk.key_id().as_bytes());
        assert_eq!(env[13..29], sealer.current_data_key_id());
        assert_eq!(sealer.recipient_key_id(), sk.key_id());
        // First nonce under a data key is zero, then counts up.
        assert_eq!(&env[109..121], &[0u8; 12]);
        let env2 = sealer.seal_bytes("site", b"hello").unwrap();
        assert_eq!(&env2[109..121], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // Same data key: the header up to the nonce is shared.
        assert_eq!(env[..109], env2[..109]);
        assert_ne!(env[121..], env2[121..]);
    }

    #[test]
    fn seal_hides_plaintext() {
        let (_sk, sealer) = sealer(RotationPolicy::default());
        let record = sample_record();
        let env = sealer.seal(&record.site_id, &record).unwrap();
        let contains = |needle: &[u8]| env.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(record.url.as_bytes()));
        assert!(!contains(record.name.as_bytes()));
        assert!(!contains(b"blog.example.com"));
    }

    #[test]
    fn rotation_after_max_events() {
        let (_sk, sealer) = sealer(RotationPolicy {
            max_events: 3,
            ..RotationPolicy::default()
        });
        let first = sealer.current_data_key_id();
        for _ in 0..3 {
            let env = sealer.seal_bytes("s", b"x").unwrap();
            assert_eq!(env[13..29], first);
        }
        assert_eq!(sealer.current_data_key_id(), first);
        let env = sealer.seal_bytes("s", b"x").unwrap();
        let second = sealer.current_data_key_id();
        assert_ne!(second, first);
        assert_eq!(env[13..29], second);
        assert_eq!(
            &env[109..121],
            &[0u8; 12],
            "counter restarts with a new key"
        );
    }

    #[test]
    fn rotation_after_max_age() {
        let (_sk, sealer) = sealer(RotationPolicy {
            max_age: Duration::from_millis(20),
            ..RotationPolicy::default()
        });
        let first = sealer.current_data_key_id();
        sealer.seal_bytes("s", b"x").unwrap();
        assert_eq!(sealer.current_data_key_id(), first);
        std::thread::sleep(Duration::from_millis(40));
        sealer.seal_bytes("s", b"x").unwrap();
        assert_ne!(sealer.current_data_key_id(), first);
    }

    #[test]
    fn rotate_now_changes_key() {
        let (_sk, sealer) = sealer(RotationPolicy::default());
        let first = sealer.current_data_key_id();
        sealer.rotate_now().unwrap();
        assert_ne!(sealer.current_data_key_id(), first);
    }

    #[test]
    fn concurrent_sealing_never_reuses_a_nonce() {
        let (_sk, sealer) = sealer(RotationPolicy {
            max_events: 50,
            ..RotationPolicy::default()
        });
        let envelopes: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|_| sealer.seal_bytes("s", b"x").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut seen = std::collections::HashSet::new();
        for env in &envelopes {
            let dek_and_nonce = (env[13..29].to_vec(), env[109..121].to_vec());
            assert!(seen.insert(dek_and_nonce), "(dek, nonce) pair reused");
            let counter = u64::from_be_bytes(env[113..121].try_into().unwrap());
            assert!(counter < 50);
        }
        assert_eq!(seen.len(), 800);
    }

    #[test]
    fn debug_does_not_panic_and_names_recipient() {
        let (sk, sealer) = sealer(RotationPolicy::default());
        assert!(format!("{sealer:?}").contains(&sk.key_id().to_string()));
    }
}
