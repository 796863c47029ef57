//! The fixed cryptographic suite and envelope byte layout, in one place.
//!
//! Nothing here is negotiable at run time: the envelope version byte selects
//! the whole suite.

/// HPKE KEM: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
/// HPKE KDF: HKDF-SHA256.
pub(crate) type Kdf = hpke::kdf::HkdfSha256;
/// HPKE AEAD: ChaCha20Poly1305.
pub(crate) type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// HPKE `info` string used when wrapping a data key.
pub(crate) const HPKE_INFO: &[u8] = b"edge-envelope-v1 dek";

/// Leading magic bytes of every envelope.
pub const ENVELOPE_MAGIC: [u8; 4] = *b"EDGE";

/// Length of a data key (ChaCha20-Poly1305 key).
pub(crate) const DEK_LEN: usize = 32;
/// Length of a data key id.
pub(crate) const DEK_ID_LEN: usize = 16;
/// Length of an AEAD tag (ChaCha20-Poly1305, both HPKE's and ring's).
pub(crate) const TAG_LEN: usize = 16;
/// Length of the AEAD nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of the HPKE encapsulated key (X25519 public key).
pub(crate) const ENC_LEN: usize = 32;
/// Length of the HPKE-wrapped data key (key plus tag).
pub(crate) const WRAPPED_LEN: usize = DEK_LEN + TAG_LEN;

/// Offset of the version byte.
pub(crate) const VERSION_AT: usize = 4;
/// Offset of the recipient key id.
pub(crate) const KEY_ID_AT: usize = 5;
/// Offset of the data key id.
pub(crate) const DEK_ID_AT: usize = KEY_ID_AT + 8;
/// Offset of the HPKE encapsulated key; also the length of the HPKE aad.
pub(crate) const ENC_AT: usize = DEK_ID_AT + DEK_ID_LEN;
/// Offset of the wrapped data key.
pub(crate) const WRAPPED_AT: usize = ENC_AT + ENC_LEN;
/// Offset of the nonce; also the length of the per-data-key prefix.
pub(crate) const NONCE_AT: usize = WRAPPED_AT + WRAPPED_LEN;
/// Offset of the AEAD ciphertext.
pub(crate) const CIPHERTEXT_AT: usize = NONCE_AT + NONCE_LEN;

/// Bytes an envelope adds to its plaintext (header, nonce and tag).
pub const ENVELOPE_OVERHEAD: usize = CIPHERTEXT_AT + TAG_LEN;

/// Builds the AEAD nonce for event number `counter` under one data key:
/// four zero bytes followed by the big-endian counter.
pub(crate) fn nonce_for(counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// Runs `f` with the event AEAD's associated data: the per-data-key prefix
/// followed by the site id. Uses a stack buffer for ordinary site ids.
pub(crate) fn with_event_aad<R>(
    prefix: &[u8; NONCE_AT],
    site_id: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    const STACK: usize = NONCE_AT + 128;
    let total = NONCE_AT + site_id.len();
    if total <= STACK {
        let mut buf = [0u8; STACK];
        buf[..NONCE_AT].copy_from_slice(prefix);
        buf[NONCE_AT..total].copy_from_slice(site_id.as_bytes());
        f(&buf[..total])
    } else {
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(site_id.as_bytes());
        f(&buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use hpke::{Deserializable as _, Kem as _, OpModeR, Serializable as _};

    use super::*;

    /// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20Poly1305, mode Base (0); first encryption (sequence number 0).
    mod rfc9180_a2 {
        pub const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
        pub const IKM_R: &str = "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df";
        pub const PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
        pub const SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
        pub const ENC: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
        pub const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
        pub const AAD_0: &str = "436f756e742d30";
        pub const CT_0: &str = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector hex")
    }

    #[test]
    fn rfc9180_a2_base_mode_vector() {
        use rfc9180_a2::*;
        assert_eq!(
            <Kem as hpke::Kem>::KEM_ID,
            0x0020,
            "DHKEM(X25519, HKDF-SHA256)"
        );

        let (sk, pk) = Kem::derive_keypair(&unhex(IKM_R));
        assert_eq!(hex::encode(pk.to_bytes()), PK_RM, "pkRm");
        // hpke >= 0.15 serializes X25519 private keys clamped (RFC 9180
        // section 7.1.2 / RFC 7748 section 5); the RFC lists skRm unclamped.
        // Both must denote the same key.
        let rfc_sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&unhex(SK_RM)).unwrap();
        assert!(rfc_sk == sk, "skRm: derived private key differs from RFC");
        let mut clamped = unhex(SK_RM);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        assert_eq!(
            sk.to_bytes().as_slice(),
            clamped.as_slice(),
            "skRm (clamped)"
        );
        assert_eq!(Kem::sk_to_pk(&rfc_sk), pk);

        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&unhex(ENC)).unwrap();
        let ct = unhex(CT_0);
        assert_eq!(ct.len(), unhex(PT).len() + TAG_LEN);
        let pt = hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            &unhex(INFO),
            &ct,
            &unhex(AAD_0),
        )
        .expect("RFC 9180 A.2.1 ciphertext 0 must open");
        assert_eq!(hex::encode(&pt), PT, "plaintext");
        assert_eq!(pt, b"Beauty is truth, truth beauty");

        // And it must not open with anything changed.
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(
            hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
                &OpModeR::Base,
                &sk,
                &enc,
                &unhex(INFO),
                &bad,
                &unhex(AAD_0)
            )
            .is_err()
        );
        assert!(
            hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
                &OpModeR::Base,
                &sk,
                &enc,
                &unhex(INFO),
                &ct,
                b"Count-1"
            )
            .is_err()
        );
    }

    #[test]
    fn layout_matches_documented_offsets() {
        assert_eq!(VERSION_AT, 4);
        assert_eq!(KEY_ID_AT, 5);
        assert_eq!(DEK_ID_AT, 13);
        assert_eq!(ENC_AT, 29);
        assert_eq!(WRAPPED_AT, 61);
        assert_eq!(NONCE_AT, 109);
        assert_eq!(CIPHERTEXT_AT, 121);
        assert_eq!(ENVELOPE_OVERHEAD, 137);
    }

    #[test]
    fn nonce_is_zero_prefix_then_big_endian_counter() {
        assert_eq!(nonce_for(0), [0; 12]);
        assert_eq!(
            nonce_for(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn event_aad_is_prefix_then_site() {
        let prefix = [7u8; NONCE_AT];
        for site in ["", "a", &"x".repeat(128), &"y".repeat(500)] {
            let aad = with_event_aad(&prefix, site, <[u8]>::to_vec);
            assert_eq!(aad.len(), NONCE_AT + site.len());
            assert_eq!(&aad[..NONCE_AT], &prefix[..]);
            assert_eq!(&aad[NONCE_AT..], site.as_bytes());
        }
    }
}
