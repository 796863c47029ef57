//! Framing of Kafka records inside a backup object (framing version 1).
//!
//! An object, before compression, is:
//!
//! ```text
//! magic "EDGEBKUP" (8 bytes) | framing version u8 = 1
//! record*                    | each: u32 body length, then the body
//! end marker u32 = 0         | (a body is never empty)
//! record count u64           | must equal the number of records before it
//! ```
//!
//! A record body (all integers big-endian, lengths in bytes):
//!
//! ```text
//! i32 partition | i64 offset | u8 timestamp type (0 none, 1 create, 2 log append) | i64 timestamp ms
//! u16 topic length | topic (UTF-8)
//! i32 key length (-1 = null) | key
//! i32 value length (-1 = null) | value
//! u32 header count | per header: u16 name length | name (UTF-8) | i32 value length (-1 = null) | value
//! ```
//!
//! The layout is documented in docs/backup.md; any change needs a new
//! [`FRAMING_VERSION`].

use thiserror::Error;

/// First bytes of every (decompressed) backup object.
pub const MAGIC: [u8; 8] = *b"EDGEBKUP";
/// Version of the record framing written by this build.
pub const FRAMING_VERSION: u8 = 1;

/// When Kafka says a record was stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// The record carries no timestamp.
    None,
    /// Producer create time, milliseconds since the Unix epoch.
    CreateTime(i64),
    /// Broker log-append time, milliseconds since the Unix epoch.
    LogAppendTime(i64),
}

impl Timestamp {
    /// Milliseconds since the Unix epoch, if any.
    pub fn millis(self) -> Option<i64> {
        match self {
            Timestamp::None => None,
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
        }
    }
}

/// One record header, as Kafka delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value (`None` = null).
    pub value: Option<Vec<u8>>,
}

/// A Kafka record exactly as consumed: still encrypted, never decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// Topic it was read from.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Kafka timestamp.
    pub timestamp: Timestamp,
    /// Message key (the site id for edge events).
    pub key: Option<Vec<u8>>,
    /// Message value (the envelope for edge events).
    pub value: Option<Vec<u8>>,
    /// Message headers, in order.
    pub headers: Vec<Header>,
}

/// Why a byte string is not a valid framed object.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The object does not start with [`MAGIC`].
    #[error("not a backup object (bad magic)")]
    BadMagic,
    /// The framing version is not one this build reads.
    #[error("unsupported framing version {0}")]
    UnsupportedVersion(u8),
    /// The bytes end inside a record or before the trailer.
    #[error("truncated at byte {at}")]
    Truncated {
        /// Byte position where more data was expected.
        at: usize,
    },
    /// A field holds an impossible value.
    #[error("malformed record at byte {at}: {what}")]
    Malformed {
        /// Byte position of the record.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The trailer's record count differs from the records present.
    #[error("trailer says {trailer} records, found {found}")]
    CountMismatch {
        /// Count written in the trailer.
        trailer: u64,
        /// Records decoded.
        found: u64,
    },
    /// Bytes follow the trailer.
    #[error("{0} trailing bytes after the trailer")]
    TrailingBytes(usize),
    /// A record cannot be represented in this framing (a length overflows).
    #[error("record cannot be framed: {0}")]
    TooLarge(&'static str),
}

/// Writes framed records into a growing buffer.
#[derive(Debug)]
pub struct FrameWriter {
    buf: Vec<u8>,
    count: u64,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    /// A buffer holding only the object header.
    pub fn new() -> FrameWriter {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&MAGIC);
        buf.push(FRAMING_VERSION);
        FrameWriter { buf, count: 0 }
    }

    /// Bytes written so far (header and records, no trailer).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends one record.
    pub fn push(&mut self, r: &BackupRecord) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // body length, patched below
        self.buf.extend_from_slice(&r.partition.to_be_bytes());
        self.buf.extend_from_slice(&r.offset.to_be_bytes());
        let (ty, ms) = match r.timestamp {
            Timestamp::None => (0u8, 0i64),
            Timestamp::CreateTime(t) => (1, t),
            Timestamp::LogAppendTime(t) => (2, t),
        };
        self.buf.push(ty);
        self.buf.extend_from_slice(&ms.to_be_bytes());
        let result = self.push_rest(r);
        if let Err(e) = result {
            self.buf.truncate(start);
            return Err(e);
        }
        let body = self.buf.len() - start - 4;
        let Ok(body) = u32::try_from(body) else {
            self.buf.truncate(start);
            return Err(FrameError::TooLarge("record body over 4 GiB"));
        };
        self.buf[start..start + 4].copy_from_slice(&body.to_be_bytes());
        self.count += 1;
        Ok(())
    }

    fn push_rest(&mut self, r: &BackupRecord) -> Result<(), FrameError> {
        let topic_len =
            u16::try_from(r.topic.len()).map_err(|_| FrameError::TooLarge("topic name"))?;
        self.buf.extend_from_slice(&topic_len.to_be_bytes());
        self.buf.extend_from_slice(r.topic.as_bytes());
        self.push_nullable(r.key.as_deref())?;
        self.push_nullable(r.value.as_deref())?;
        let n = u32::try_from(r.headers.len()).map_err(|_| FrameError::TooLarge("headers"))?;
        self.buf.extend_from_slice(&n.to_be_bytes());
        for h in &r.headers {
            let len =
                u16::try_from(h.name.len()).map_err(|_| FrameError::TooLarge("header name"))?;
            self.buf.extend_from_slice(&len.to_be_bytes());
            self.buf.extend_from_slice(h.name.as_bytes());
            self.push_nullable(h.value.as_deref())?;
        }
        Ok(())
    }

    fn push_nullable(&mut self, bytes: Option<&[u8]>) -> Result<(), FrameError> {
        match bytes {
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                let len = i32::try_from(b.len()).map_err(|_| FrameError::TooLarge("field"))?;
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(b);
            }
        }
        Ok(())
    }

    /// Appends the trailer and returns the framed object (before compression).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&0u32.to_be_bytes());
        self.buf.extend_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// Reads a framed object (after decompression) back into records.
pub fn decode(bytes: &[u8]) -> Result<Vec<BackupRecord>, FrameError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let mut c = Cursor {
        bytes,
        pos: MAGIC.len(),
    };
    let version = c.u8()?;
    if version != FRAMING_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let mut out = Vec::new();
    loop {
        let at = c.pos;
        let len = c.u32()? as usize;
        if len == 0 {
            break;
        }
        let body = c.take(len)?;
        let mut b = Cursor {
            bytes: body,
            pos: 0,
        };
        let record = read_body(&mut b).map_err(|e| match e {
            FrameError::Truncated { .. } => FrameError::Malformed {
                at,
                what: "field runs past the record length",
            },
            FrameError::Malformed { what, .. } => FrameError::Malformed { at, what },
            other => other,
        })?;
        if b.pos != body.len() {
            return Err(FrameError::Malformed {
                at,
                what: "record length larger than its fields",
            });
        }
        out.push(record);
    }
    let trailer = c.u64()?;
    if trailer != out.len() as u64 {
        return Err(FrameError::CountMismatch {
            trailer,
            found: out.len() as u64,
        });
    }
    if c.pos != bytes.len() {
        return Err(FrameError::TrailingBytes(bytes.len() - c.pos));
    }
    Ok(out)
}

fn read_body(b: &mut Cursor<'_>) -> Result<BackupRecord, FrameError> {
    let partition = b.i32()?;
    let offset = b.i64()?;
    let ty = b.u8()?;
    let ms = b.i64()?;
    let timestamp = match ty {
        0 => Timestamp::None,
        1 => Timestamp::CreateTime(ms),
        2 => Timestamp::LogAppendTime(ms),
        _ => {
            return Err(FrameError::Malformed {
                at: 0,
                what: "unknown timestamp type",
            });
        }
    };
    let topic_len = b.u16()? as usize;
    let topic = b.string(topic_len)?;
    let key = b.nullable()?;
    let value = b.nullable()?;
    let n = b.u32()?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let len = b.u16()? as usize;
        let name = b.string(len)?;
        let value = b.nullable()?;
        headers.push(Header { name, value });
    }
    Ok(BackupRecord {
        topic,
        partition,
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(FrameError::Truncated { at: self.pos })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        self.array().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        self.array().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, FrameError> {
        self.array().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        self.array().map(i64::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        self.array().map(u64::from_be_bytes)
    }

    fn string(&mut self, n: usize) -> Result<String, FrameError> {
        let at = self.pos;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FrameError::Malformed {
            at,
            what: "name is not UTF-8",
        })
    }

    fn nullable(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let at = self.pos;
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(FrameError::Malformed {
                at,
                what: "negative length",
            }),
            n => Ok(Some(self.take(n as usize)?.to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::test_support::record;

    #[test]
    fn round_trip_keeps_every_field() {
        let records = vec![
            record(2, 7, 1_700_000_000_000, "site-a"),
            BackupRecord {
                topic: "t".into(),
                partition: 0,
                offset: 8,
                timestamp: Timestamp::LogAppendTime(-5),
                key: None,
                value: Some(vec![]),
                headers: vec![
                    Header {
                        name: "trace".into(),
                        value: Some(b"abc".to_vec()),
                    },
                    Header {
                        name: "null".into(),
                        value: None,
                    },
                ],
            },
            BackupRecord {
                topic: "t".into(),
                partition: 1,
                offset: i64::MAX,
                timestamp: Timestamp::None,
                key: Some(vec![]),
                value: None,
                headers: vec![],
            },
        ];
        let mut w = FrameWriter::new();
        for r in &records {
            w.push(r).unwrap();
        }
        assert_eq!(w.count(), 3);
        let bytes = w.finish();
        assert_eq!(decode(&bytes).unwrap(), records);
    }

    #[test]
    fn empty_object_round_trips() {
        let bytes = FrameWriter::new().finish();
        assert_eq!(bytes.len(), 8 + 1 + 4 + 8);
        assert_eq!(decode(&bytes).unwrap(), vec![]);
    }

    #[test]
    fn layout_is_the_documented_one() {
        let mut w = FrameWriter::new();
        w.push(&BackupRecord {
            topic: "t".into(),
            partition: 1,
            offset: 2,
            timestamp: Timestamp::CreateTime(3),
            key: Some(b"k".to_vec()),
            value: None,
            headers: vec![],
        })
        .unwrap();
        let bytes = w.finish();
        let mut expected = b"EDGEBKUP\x01".to_vec();
        let body: Vec<u8> = [
            &1i32.to_be_bytes()[..],
            &2i64.to_be_bytes(),
            &[1],
            &3i64.to_be_bytes(),
            &1u16.to_be_bytes(),
            b"t",
            &1i32.to_be_bytes(),
            b"k",
            &(-1i32).to_be_bytes(),
            &0u32.to_be_bytes(),
        ]
        .concat();
        expected.extend_from_slice(&(body.len() as u32).to_be_bytes());
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&0u32.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn damage_is_detected() {
        let mut w = FrameWriter::new();
        w.push(&record(0, 1, 1, "s")).unwrap();
        w.push(&record(0, 2, 1, "s")).unwrap();
        let good = w.finish();

        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(FrameError::BadMagic));

        let mut bad = good.clone();
        bad[8] = 9;
        assert_eq!(decode(&bad), Err(FrameError::UnsupportedVersion(9)));

        for cut in 9..good.len() {
            assert!(
                decode(&good[..cut]).is_err(),
                "truncation at {cut} accepted"
            );
        }

        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(decode(&bad), Err(FrameError::TrailingBytes(1)));

        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] = 3;
        assert_eq!(
            decode(&bad),
            Err(FrameError::CountMismatch {
                trailer: 3,
                found: 2
            })
        );
    }
}
