//! The backend side: opens envelopes with the private keys of a [`Keyring`].
//!
//! Unwrapped data keys are cached by data key id, so HPKE runs once per data
//! key rather than once per event.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use hpke::{Deserializable as _, OpModeR};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::ENVELOPE_VERSION;
use crate::keys::{KeyId, Keyring};
use crate::record::EventRecord;
use crate::suite::{
    CIPHERTEXT_AT, DEK_ID_AT, DEK_ID_LEN, DEK_LEN, ENC_AT, ENVELOPE_MAGIC, ENVELOPE_OVERHEAD,
    HPKE_INFO, HpkeAead, KEY_ID_AT, Kdf, Kem, NONCE_AT, VERSION_AT, WRAPPED_AT, with_event_aad,
};
use crate::wire::{DecodeError, decode_record};

/// Default number of unwrapped data keys an [`Opener`] keeps.
pub const DEFAULT_DEK_CACHE_CAPACITY: usize = 1024;

/// Why an envelope could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    /// Shorter than the smallest possible envelope.
    #[error("envelope is truncated")]
    Truncated,
    /// Does not start with the envelope magic bytes.
    #[error("not an envelope (bad magic)")]
    BadMagic,
    /// Envelope version this build cannot open.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// Sealed to a key that is not in the keyring.
    #[error("envelope sealed to unknown key {0}")]
    UnknownKey(KeyId),
    /// HPKE could not unwrap the data key (tampered header or wrong key).
    #[error("could not unwrap data key")]
    UnwrapFailed,
    /// The event AEAD failed: tampered envelope or wrong site id.
    #[error("decryption failed (tampered envelope or wrong site id)")]
    DecryptFailed,
    /// Decrypted, but the plaintext is not a valid record.
    #[error("decrypted record is invalid: {0}")]
    Decode(#[from] DecodeError),
}

impl OpenError {
    /// Short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OpenError::Truncated => "truncated",
            OpenError::BadMagic => "bad_magic",
            OpenError::UnsupportedVersion(_) => "unsupported_version",
            OpenError::UnknownKey(_) => "unknown_key",
            OpenError::UnwrapFailed => "unwrap_failed",
            OpenError::DecryptFailed => "decrypt_failed",
            OpenError::Decode(_) => "decode",
        }
    }
}

/// The clear-text header fields of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnvelopeHeader {
    /// Envelope version ([`ENVELOPE_VERSION`]).
    pub version: u8,
    /// Id of the backend key the data key is wrapped to.
    pub recipient_key_id: KeyId,
    /// Id of the data key the event is encrypted under.
    pub dek_id: [u8; 16],
}

/// Parses and checks the clear-text header without decrypting anything.
///
/// Checks, in order: length ≥ 4, magic, length ≥ 5, version, full minimum
/// length. Never panics.
pub fn peek_header(envelope: &[u8]) -> Result<EnvelopeHeader, OpenError> {
    let magic = envelope.get(..VERSION_AT).ok_or(OpenError::Truncated)?;
    if magic != ENVELOPE_MAGIC {
        return Err(OpenError::BadMagic);
    }
    let version = *envelope.get(VERSION_AT).ok_or(OpenError::Truncated)?;
    if version != ENVELOPE_VERSION {
        return Err(OpenError::UnsupportedVersion(version));
    }
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(OpenError::Truncated);
    }
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&envelope[KEY_ID_AT..DEK_ID_AT]);
    let mut dek_id = [0u8; DEK_ID_LEN];
    dek_id.copy_from_slice(&envelope[DEK_ID_AT..ENC_AT]);
    Ok(EnvelopeHeader {
        version,
        recipient_key_id: KeyId(key_id),
        dek_id,
    })
}

/// An unwrapped data key, remembered with the exact header it came from.
struct CachedDek {
    prefix: [u8; NONCE_AT],
    key: Arc<LessSafeKey>,
}

/// Bounded map of data key id to unwrapped key, evicting the oldest insert.
struct DekCache {
    capacity: usize,
    map: HashMap<[u8; DEK_ID_LEN], CachedDek>,
    order: VecDeque<[u8; DEK_ID_LEN]>,
}

impl DekCache {
    fn new(capacity: usize) -> DekCache {
        DekCache {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached key, only if it was unwrapped from this exact header.
    fn get(&self, prefix: &[u8]) -> Option<Arc<LessSafeKey>> {
        let id: [u8; DEK_ID_LEN] = prefix[DEK_ID_AT..ENC_AT].try_into().ok()?;
        self.map
            .get(&id)
            .filter(|c| c.prefix[..] == *prefix)
            .map(|c| Arc::clone(&c.key))
    }

    fn insert(&mut self, prefix: [u8; NONCE_AT], key: Arc<LessSafeKey>) {
        if self.capacity == 0 {
            return;
        }
        let mut id = [0u8; DEK_ID_LEN];
        id.copy_from_slice(&prefix[DEK_ID_AT..ENC_AT]);
        if self.map.insert(id, CachedDek { prefix, key }).is_none() {
            self.order.push_back(id);
            while self.map.len() > self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }
}

/// Opens envelopes sealed to any key of a [`Keyring`]. `Send + Sync`.
pub struct Opener {
    keyring: Keyring,
    cache: Mutex<DekCache>,
}

impl Opener {
    /// An opener with the default data key cache size.
    pub fn new(keyring: Keyring) -> Opener {
        Opener::with_cache_capacity(keyring, DEFAULT_DEK_CACHE_CAPACITY)
    }

    /// An opener caching at most `capacity` unwrapped data keys (0 disables the cache).
    pub fn with_cache_capacity(keyring: Keyring, capacity: usize) -> Opener {
        Opener {
            keyring,
            cache: Mutex::new(DekCache::new(capacity)),
        }
    }

    /// The keyring this opener uses.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Number of unwrapped data keys currently cached.
    pub fn cached_data_keys(&self) -> usize {
        self.lock_cache().map.len()
    }

    /// Same as the free function [`peek_header`].
    pub fn peek_header(envelope: &[u8]) -> Result<EnvelopeHeader, OpenError> {
        peek_header(envelope)
    }

    /// Opens an envelope sealed for `site_id` and decodes the record.
    pub fn open(&self, site_id: &str, envelope: &[u8]) -> Result<EventRecord, OpenError> {
        let plaintext = self.open_bytes(site_id, envelope)?;
        Ok(decode_record(&plaintext)?)
    }

    /// Opens an envelope sealed for `site_id` and returns the plaintext bytes.
    pub fn open_bytes(&self, site_id: &str, envelope: &[u8]) -> Result<Vec<u8>, OpenError> {
        let header = peek_header(envelope)?;
        let mut prefix = [0u8; NONCE_AT];
        prefix.copy_from_slice(&envelope[..NONCE_AT]);
        let key = self.data_key(&header, prefix)?;

        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&envelope[NONCE_AT..CIPHERTEXT_AT]);
        let mut buf = envelope[CIPHERTEXT_AT..].to_vec();
        let len = with_event_aad(&prefix, site_id, |aad| {
            key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map(|plain| plain.len())
        })
        .map_err(|_| OpenError::DecryptFailed)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// The data key for this header: from the cache, or unwrapped with HPKE.
    fn data_key(
        &self,
        header: &EnvelopeHeader,
        prefix: [u8; NONCE_AT],
    ) -> Result<Arc<LessSafeKey>, OpenError> {
        if let Some(key) = self.lock_cache().get(&prefix) {
            return Ok(key);
        }
        let private = self
            .keyring
            .get(&header.recipient_key_id)
            .ok_or(OpenError::UnknownKey(header.recipient_key_id))?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&prefix[ENC_AT..WRAPPED_AT])
            .map_err(|_| OpenError::UnwrapFailed)?;
        let dek = Zeroizing::new(
            hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
                &OpModeR::Base,
                private.hpke(),
                &enc,
                HPKE_INFO,
                &prefix[WRAPPED_AT..NONCE_AT],
                &prefix[..ENC_AT],
            )
            .map_err(|_| OpenError::UnwrapFailed)?,
        );
        if dek.len() != DEK_LEN {
            return Err(OpenError::UnwrapFailed);
        }
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &dek).map_err(|_| OpenError::UnwrapFailed)?;
        let key = Arc::new(LessSafeKey::new(unbound));
        self.lock_cache().insert(prefix, Arc::clone(&key));
        Ok(key)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, DekCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("keys", &self.keyring.ids())
            .field("cached_data_keys", &self.cached_data_keys())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keys::PrivateKey;
    use crate::seal::{RotationPolicy, Sealer};
    use crate::wire::encode_record;
    use crate::wire::testing::{arb_record, sample_record};

    const SITE: &str = "example-blog";

    fn setup() -> (Opener, Sealer) {
        let sk = PrivateKey::generate();
        let sealer = Sealer::new(sk.public_key(), RotationPolicy::default()).unwrap();
        let opener = Opener::new(Keyring::from_iter([sk]));
        (opener, sealer)
    }

    #[test]
    fn opener_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Opener>();
    }

    #[test]
    fn round_trip_realistic_record() {
        let (opener, sealer) = setup();
        let record = sample_record();
        let env = sealer.seal(SITE, &record).unwrap();
        let contains = |needle: &[u8]| env.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(record.url.as_bytes()), "url leaked");
        assert!(!contains(record.name.as_bytes()), "name leaked");
        assert!(!contains(b"Ada Lovelace"), "prop leaked");
        assert_eq!(opener.open(SITE, &env).unwrap(), record);
        assert_eq!(
            opener.open_bytes(SITE, &env).unwrap(),
            encode_record(&record)
        );
    }

    #[test]
    fn peek_header_reports_clear_fields() {
        let (opener, sealer) = setup();
        let env = sealer.seal(SITE, &sample_record()).unwrap();
        let h = Opener::peek_header(&env).unwrap();
        assert_eq!(h.version, ENVELOPE_VERSION);
        assert_eq!(h.recipient_key_id, sealer.recipient_key_id());
        assert_eq!(h.dek_id, sealer.current_data_key_id());
        assert_eq!(opener.keyring().ids(), vec![h.recipient_key_id]);
    }

    #[test]
    fn flipping_any_byte_fails() {
        let (opener, sealer) = setup();
        let env = sealer.seal(SITE, &sample_record()).unwrap();
        opener.open(SITE, &env).unwrap();
        for pos in 0..env.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = env.clone();
                bad[pos] ^= flip;
                let err = opener.open(SITE, &bad).unwrap_err();
                let expected = match pos {
                    0..4 => "bad_magic",
                    4 => "unsupported_version",
                    5..13 => "unknown_key",
                    13..109 => "unwrap_failed",
                    _ => "decrypt_failed",
                };
                assert_eq!(err.kind(), expected, "byte {pos} ^ {flip:#04x}: {err}");
            }
        }
        // The cache was never poisoned by tampered headers.
        assert_eq!(opener.cached_data_keys(), 1);
        opener.open(SITE, &env).unwrap();
    }

    #[test]
    fn wrong_site_is_decrypt_failed() {
        let (opener, sealer) = setup();
        let env = sealer.seal(SITE, &sample_record()).unwrap();
        assert_eq!(
            opener.open("other-site", &env),
            Err(OpenError::DecryptFailed)
        );
        assert_eq!(opener.open("", &env), Err(OpenError::DecryptFailed));
        assert_eq!(
            opener.open("example-blog ", &env),
            Err(OpenError::DecryptFailed)
        );
        let long_site = "s".repeat(1000);
        let env = sealer.seal(&long_site, &sample_record()).unwrap();
        opener.open(&long_site, &env).unwrap();
        assert_eq!(opener.open(SITE, &env), Err(OpenError::DecryptFailed));
    }

    #[test]
    fn unknown_key() {
        let (_opener, sealer) = setup();
        let env = sealer.seal(SITE, &sample_record()).unwrap();
        let stranger = Opener::new(Keyring::from_iter([PrivateKey::generate()]));
        assert_eq!(
            stranger.open(SITE, &env),
            Err(OpenError::UnknownKey(sealer.recipient_key_id()))
        );
        let empty = Opener::new(Keyring::new());
        assert_eq!(empty.open(SITE, &env).unwrap_err().kind(), "unknown_key");
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let (opener, sealer) = setup();
        let env = sealer.seal(SITE, &sample_record()).unwrap();
        for len in 0..env.len() {
            let err = opener.open(SITE, &env[..len]).unwrap_err();
            if len < ENVELOPE_OVERHEAD {
                assert_eq!(err, OpenError::Truncated, "len {len}");
            } else {
                assert_eq!(err, OpenError::DecryptFailed, "len {len}");
            }
        }
        assert_eq!(opener.open(SITE, b"EDG"), Err(OpenError::Truncated));
        assert_eq!(opener.open(SITE, b"XXXXX"), Err(OpenError::BadMagic));
        assert_eq!(
            opener.open(SITE, b"EDGE\x02"),
            Err(OpenError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn empty_plaintext_round_trips_but_is_not_a_record() {
        let (opener, sealer) = setup();
        let env = sealer.seal_bytes(SITE, b"").unwrap();
        assert_eq!(env.len(), ENVELOPE_OVERHEAD);
        assert_eq!(opener.open_bytes(SITE, &env).unwrap(), Vec::<u8>::new());
        assert_eq!(
            opener.open(SITE, &env),
            Err(OpenError::Decode(DecodeError::Empty))
        );
    }

    #[test]
    fn rotation_keeps_old_envelopes_openable_and_caches_per_dek() {
        let sk = PrivateKey::generate();
        let sealer = Sealer::new(
            sk.public_key(),
            RotationPolicy {
                max_events: 5,
                ..RotationPolicy::default()
            },
        )
        .unwrap();
        let opener = Opener::new(Keyring::from_iter([sk]));
        let record = sample_record();
        let first_dek = sealer.current_data_key_id();
        let envs: Vec<_> = (0..12)
            .map(|_| sealer.seal(SITE, &record).unwrap())
            .collect();
        let deks: std::collections::BTreeSet<_> = envs
            .iter()
            .map(|e| Opener::peek_header(e).unwrap().dek_id)
            .collect();
        assert_eq!(deks.len(), 3, "12 events at 5 per key use 3 keys");
        assert!(deks.contains(&first_dek));
        assert_ne!(sealer.current_data_key_id(), first_dek);
        for env in envs.iter().rev() {
            assert_eq!(opener.open(SITE, env).unwrap(), record);
        }
        assert_eq!(opener.cached_data_keys(), 3, "one HPKE unwrap per data key");
    }

    #[test]
    fn keyring_with_two_keys_opens_both() {
        let old = PrivateKey::generate();
        let new = PrivateKey::generate();
        let old_sealer = Sealer::new(old.public_key(), RotationPolicy::default()).unwrap();
        let new_sealer = Sealer::new(new.public_key(), RotationPolicy::default()).unwrap();
        let record = sample_record();
        let env_old = old_sealer.seal(SITE, &record).unwrap();
        let env_new = new_sealer.seal(SITE, &record).unwrap();

        let opener = Opener::new(Keyring::from_iter([old, new]));
        assert_eq!(opener.open(SITE, &env_old).unwrap(), record);
        assert_eq!(opener.open(SITE, &env_new).unwrap(), record);

        // Once the old key is retired from the keyring, its envelopes are unknown.
        let mut only_new = Keyring::new();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.key");
        let new_again = opener
            .keyring()
            .get(&new_sealer.recipient_key_id())
            .unwrap();
        new_again.write_file(&p).unwrap();
        only_new.insert(PrivateKey::read_file(&p).unwrap());
        let opener = Opener::new(only_new);
        assert_eq!(
            opener.open(SITE, &env_old),
            Err(OpenError::UnknownKey(old_sealer.recipient_key_id()))
        );
        assert_eq!(opener.open(SITE, &env_new).unwrap(), record);
    }

    #[test]
    fn cache_is_bounded_and_can_be_disabled() {
        let sk = PrivateKey::generate();
        let sealer = Sealer::new(sk.public_key(), RotationPolicy::default()).unwrap();
        let opener = Opener::with_cache_capacity(Keyring::from_iter([sk]), 2);
        let mut envs = Vec::new();
        for _ in 0..4 {
            envs.push(sealer.seal_bytes(SITE, b"x").unwrap());
            sealer.rotate_now().unwrap();
        }
        for env in &envs {
            opener.open_bytes(SITE, env).unwrap();
        }
        assert_eq!(opener.cached_data_keys(), 2);
        // Evicted keys are simply unwrapped again.
        opener.open_bytes(SITE, &envs[0]).unwrap();

        let sk = PrivateKey::generate();
        let sealer = Sealer::new(sk.public_key(), RotationPolicy::default()).unwrap();
        let opener = Opener::with_cache_capacity(Keyring::from_iter([sk]), 0);
        let env = sealer.seal_bytes(SITE, b"x").unwrap();
        assert_eq!(opener.open_bytes(SITE, &env).unwrap(), b"x");
        assert_eq!(opener.cached_data_keys(), 0);
    }

    /// Builds a well-formed envelope for `pk` with a chosen data key id, the
    /// way anyone holding the public key could.
    fn forge(pk: &crate::keys::PublicKey, dek_id: &[u8], site: &str, pt: &[u8]) -> Vec<u8> {
        use hpke::Serializable as _;
        let dek = [0x11u8; DEK_LEN];
        let mut env = Vec::new();
        env.extend_from_slice(b"EDGE");
        env.push(ENVELOPE_VERSION);
        env.extend_from_slice(pk.key_id().as_bytes());
        env.extend_from_slice(dek_id);
        let (enc, wrapped) = hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(
            &hpke::OpModeS::Base,
            pk.hpke(),
            HPKE_INFO,
            &dek,
            &env.clone(),
        )
        .unwrap();
        env.extend_from_slice(&enc.to_bytes());
        env.extend_from_slice(&wrapped);
        assert_eq!(env.len(), NONCE_AT);
        let mut aad = env.clone();
        aad.extend_from_slice(site.as_bytes());
        env.extend_from_slice(&[0u8; 12]);
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &dek).unwrap());
        let mut ct = pt.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(aad),
            &mut ct,
        )
        .unwrap();
        env.extend_from_slice(&ct);
        env
    }

    #[test]
    fn same_dek_id_with_other_wrapping_does_not_poison_cache() {
        // Anyone with the public key can seal; an envelope reusing a
        // legitimate dek id must not stop the legitimate ones from opening.
        let sk = PrivateKey::generate();
        let pk = sk.public_key();
        let honest = Sealer::new(pk.clone(), RotationPolicy::default()).unwrap();
        let opener = Opener::new(Keyring::from_iter([sk]));

        let good = honest.seal_bytes(SITE, b"good").unwrap();
        let forged = forge(&pk, &good[13..29], SITE, b"evil");
        assert_eq!(forged[..29], good[..29], "same header fields up to the enc");

        assert_eq!(opener.open_bytes(SITE, &good).unwrap(), b"good");
        assert_eq!(opener.open_bytes(SITE, &forged).unwrap(), b"evil");
        assert_eq!(opener.open_bytes(SITE, &good).unwrap(), b"good");
        assert_eq!(opener.open_bytes(SITE, &forged).unwrap(), b"evil");

        // Splicing the honest dek id into another sealer's header breaks the
        // HPKE associated data, so the data key cannot be unwrapped.
        let other = Sealer::new(pk, RotationPolicy::default()).unwrap();
        let mut spliced = other.seal_bytes(SITE, b"x").unwrap();
        spliced[13..29].copy_from_slice(&good[13..29]);
        assert_eq!(
            opener.open_bytes(SITE, &spliced),
            Err(OpenError::UnwrapFailed)
        );
        assert_eq!(opener.open_bytes(SITE, &good).unwrap(), b"good");
    }

    #[test]
    fn kinds_are_distinct() {
        let kinds = [
            OpenError::Truncated.kind(),
            OpenError::BadMagic.kind(),
            OpenError::UnsupportedVersion(2).kind(),
            OpenError::UnknownKey(KeyId([0; 8])).kind(),
            OpenError::UnwrapFailed.kind(),
            OpenError::DecryptFailed.kind(),
            OpenError::Decode(DecodeError::Empty).kind(),
        ];
        let unique: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn prop_seal_open_round_trip(record in arb_record(), site in "\\PC{0,40}") {
            let (opener, sealer) = setup();
            let env = sealer.seal(&site, &record).unwrap();
            prop_assert_eq!(opener.open(&site, &env).unwrap(), record);
        }
    }
}
