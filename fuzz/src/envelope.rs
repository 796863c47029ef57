//! Envelope opening (`edge_envelope::Opener`) and the record wire decoder.
//!
//! The keyring is fixed: `keys/fuzz-backend.key`, a key pair made for the
//! fuzzer only (it protects nothing), so envelopes in the corpus sealed to
//! it open and a reproducer replays the same way on every machine.

use std::io::Write as _;
use std::sync::OnceLock;

use edge_envelope::{
    EventRecord, Keyring, OpenError, Opener, PrivateKey, RotationPolicy, Sealer, decode_record,
    encode_record,
};

/// The fuzzer's backend key file (JSON, see docs/envelope.md).
const KEY_FILE: &str = include_str!("../keys/fuzz-backend.key");
/// Site id the corpus envelopes are sealed for.
pub(crate) const SITE: &str = "fuzz-site";

/// The fixed key, an opener over it and a sealer to it.
pub(crate) struct Fixture {
    pub(crate) key: PrivateKey,
    pub(crate) opener: Opener,
    pub(crate) sealer: Sealer,
}

/// Loads the fixed key once per process.
///
/// `PrivateKey::read_file` refuses files readable by others, and git does
/// not keep mode 0600, so the text is copied into a private temporary file.
#[allow(clippy::expect_used)] // A broken fixture must stop the fuzzer at once.
pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut file = tempfile::NamedTempFile::new().expect("temporary key file");
        file.write_all(KEY_FILE.as_bytes())
            .expect("write temporary key file");
        let key = PrivateKey::read_file(file.path()).expect("fuzz/keys/fuzz-backend.key");
        let again = PrivateKey::read_file(file.path()).expect("fuzz/keys/fuzz-backend.key");
        let sealer =
            Sealer::new(key.public_key(), RotationPolicy::default()).expect("sealer to the key");
        let opener = Opener::new(Keyring::from_iter([again]));
        Fixture {
            key,
            opener,
            sealer,
        }
    })
}

/// Envelope opening on arbitrary bytes. The first byte picks a mode:
///
/// * `0`: open the rest as an envelope with the fixed keyring. If it opens,
///   its header peeks and its record survives an encode/decode round trip.
/// * `1`: seal the rest as plaintext to the fixed key; it opens to exactly
///   the same bytes for the same site id and fails for another.
/// * `2`: seal a sample record, then tamper with the envelope as the rest
///   says (a big-endian `u16` offset and an XOR mask per three bytes; one
///   or two bytes left over truncate it to `first/256` of its length): any
///   effective change makes opening fail, and an unchanged envelope opens.
pub fn check_envelope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        0 => {
            let peeked = Opener::peek_header(rest);
            match f.opener.open(SITE, rest) {
                Ok(record) => {
                    let header = peeked.expect("opened, yet the header does not peek");
                    assert_eq!(header.recipient_key_id, f.key.key_id());
                    check_record_roundtrip(&record);
                }
                Err(e) => assert!(!e.kind().is_empty() && !e.to_string().is_empty()),
            }
        }
        1 => {
            let envelope = f.sealer.seal_bytes(SITE, rest).expect("seal");
            let opened = f.opener.open_bytes(SITE, &envelope);
            assert_eq!(opened.as_deref(), Ok(rest), "sealed bytes open differently");
            assert_eq!(
                f.opener.open_bytes("other-site", &envelope),
                Err(OpenError::DecryptFailed),
                "an envelope opened for another site"
            );
        }
        _ => {
            let record = sample_record();
            let envelope = f.sealer.seal(SITE, &record).expect("seal");
            let mut tampered = envelope.clone();
            let mut edits = rest.chunks_exact(3);
            for edit in edits.by_ref() {
                let at = usize::from(u16::from_be_bytes([edit[0], edit[1]])) % tampered.len();
                tampered[at] ^= edit[2];
            }
            if let [cut, ..] = edits.remainder() {
                let keep = usize::from(*cut) * tampered.len() / 256;
                tampered.truncate(keep);
            }
            let opened = f.opener.open(SITE, &tampered);
            if tampered == envelope {
                assert_eq!(opened, Ok(record), "an untouched envelope failed to open");
            } else {
                assert!(opened.is_err(), "a tampered envelope opened: {opened:?}");
            }
        }
    }
}

/// `decode_record` on arbitrary bytes: what decodes re-encodes to a record
/// that decodes to the same value.
pub fn check_wire(data: &[u8]) {
    if let Ok(record) = decode_record(data) {
        check_record_roundtrip(&record);
    }
}

fn check_record_roundtrip(record: &EventRecord) {
    let bytes = encode_record(record);
    assert_eq!(
        decode_record(&bytes).as_ref(),
        Ok(record),
        "record does not survive encode/decode"
    );
}

/// A realistic record, the plaintext of the tampering mode.
pub(crate) fn sample_record() -> EventRecord {
    EventRecord {
        site_id: SITE.to_owned(),
        received_at_ms: 1_767_225_600_123,
        name: "pageview".to_owned(),
        url: "https://blog.example.com/posts/privacy".to_owned(),
        referrer: Some("https://news.example/item".to_owned()),
        utm: edge_envelope::Utm {
            source: Some("newsletter".to_owned()),
            ..Default::default()
        },
        props: vec![("plan".to_owned(), "pro".to_owned())],
        visitor_id: [7; 16],
        device: edge_envelope::DeviceClass::Mobile,
        browser: edge_envelope::BrowserFamily::Firefox,
        os: edge_envelope::OsFamily::Android,
        event_id: [9; 16],
    }
}
