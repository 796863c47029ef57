//! The on-disk record format and a scanner that finds valid records, corrupt
//! stretches and torn tails in a segment file.
//!
//! A record is `magic (4) | body length u32 LE | crc32c u32 LE | body`, where
//! the checksum covers the length field and the body, and the body is
//! `seq u64 | appended_at_ms i64 | key_len u16 | has_header u8 | header_len u16
//! | key | header | payload`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Marks the start of every record; used to find the next record after a corrupt one.
pub const MAGIC: [u8; 4] = *b"ESr1";
/// Bytes before the body: magic, length, checksum.
pub const FRAME: usize = 12;
/// Fixed part of the body: seq, time, key length, header flag, header length.
const FIXED: usize = 8 + 8 + 2 + 1 + 2;
/// Largest body accepted when reading or writing (a record is one encrypted event).
pub const MAX_BODY: usize = 4 << 20;

/// One record as read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the spool; increases with every append, never reused.
    pub seq: u64,
    /// Unix milliseconds at which the record was appended.
    pub appended_at_ms: i64,
    /// Opaque key (the edge stores the site id).
    pub key: Vec<u8>,
    /// Optional small opaque header (the edge stores the bot reason).
    pub header: Option<Vec<u8>>,
    /// Opaque payload (the edge stores the encrypted envelope).
    pub payload: Vec<u8>,
}

/// Bytes [`encode`] appends for a record with these parts.
pub fn encoded_len(key: &[u8], header: Option<&[u8]>, payload: &[u8]) -> usize {
    FRAME + FIXED + key.len() + header.map_or(0, <[u8]>::len) + payload.len()
}

/// Appends the encoded record to `out`. The caller has checked the part sizes
/// (key and header at most `u16::MAX` bytes, body at most [`MAX_BODY`]).
pub fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    appended_at_ms: i64,
    key: &[u8],
    header: Option<&[u8]>,
    payload: &[u8],
) {
    let body_len = encoded_len(key, header, payload) - FRAME;
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.push(u8::from(header.is_some()));
    out.extend_from_slice(&(header.map_or(0, <[u8]>::len) as u16).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(h) = header {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start + 4..start + 8]),
        &out[start + FRAME..],
    );
    out[start + 8..start + FRAME].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record starting at `buf[0]`; `None` when the bytes are not a
/// complete, checksummed, well-formed record. On success also returns its length.
pub fn decode(buf: &[u8]) -> Option<(Record, usize)> {
    if buf.len() < FRAME || buf[..4] != MAGIC {
        return None;
    }
    let body_len = u32::from_le_bytes(buf[4..8].try_into().ok()?) as usize;
    if !(FIXED..=MAX_BODY).contains(&body_len) || buf.len() < FRAME + body_len {
        return None;
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().ok()?);
    let body = &buf[FRAME..FRAME + body_len];
    if crc32c::crc32c_append(crc32c::crc32c(&buf[4..8]), body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let appended_at_ms = i64::from_le_bytes(body[8..16].try_into().ok()?);
    let key_len = u16::from_le_bytes(body[16..18].try_into().ok()?) as usize;
    let has_header = body[18];
    let header_len = u16::from_le_bytes(body[19..21].try_into().ok()?) as usize;
    if has_header > 1 || (has_header == 0 && header_len != 0) {
        return None;
    }
    let rest = &body[FIXED..];
    if rest.len() < key_len + header_len {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let (header, payload) = rest.split_at(header_len);
    Some((
        Record {
            seq,
            appended_at_ms,
            key: key.to_vec(),
            header: (has_header == 1).then(|| header.to_vec()),
            payload: payload.to_vec(),
        },
        FRAME + body_len,
    ))
}

/// What the scanner found next in a segment.
#[derive(Debug)]
pub enum Found {
    /// A valid record at `offset`, `len` bytes long.
    Record {
        /// Where it starts.
        offset: u64,
        /// Its encoded length.
        len: u64,
        /// The record.
        record: Record,
    },
    /// Bytes `from..to` are not a valid record but a valid record follows at `to`.
    Corrupt {
        /// Start of the bad stretch.
        from: u64,
        /// Start of the next valid record.
        to: u64,
    },
    /// Bytes from `from` to the end of the region hold no valid record: a torn write.
    TornTail {
        /// Start of the torn bytes.
        from: u64,
    },
}

/// Reads a file region `[offset, end)` record by record through a buffer.
pub struct Scanner<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
    buf: ScanBuffer,
}

/// Bytes of one file already read by a [`Scanner`], kept by a caller that
/// scans the same file again (the reader, one record at a time) so that it
/// does not read, and zero, the rest of the region once per record. Only
/// durable bytes are ever read, and they do not change.
#[derive(Debug, Default)]
pub struct ScanBuffer {
    bytes: Vec<u8>,
    start: u64,
}

const CHUNK: usize = 1 << 20;

impl<'a> Scanner<'a> {
    /// Scans `file` from `offset` up to `end` (exclusive).
    pub fn new(file: &'a File, offset: u64, end: u64) -> Self {
        Self::resume(file, offset, end, ScanBuffer::default())
    }

    /// [`Scanner::new`] over bytes of the same `file` read by an earlier scan.
    pub fn resume(file: &'a File, offset: u64, end: u64, buf: ScanBuffer) -> Self {
        Self {
            file,
            offset,
            end,
            buf,
        }
    }

    /// The bytes read, for [`Scanner::resume`] on the same file.
    pub fn into_buffer(self) -> ScanBuffer {
        self.buf
    }

    /// Where the next item starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes the buffer hold `[at, at + n)` (clipped to the region end);
    /// returns the bytes available from `at`.
    fn window(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let want_end = (at + n as u64).min(self.end);
        let buf = &mut self.buf;
        let have_end = buf.start + buf.bytes.len() as u64;
        if at < buf.start || want_end > have_end {
            let read_end = want_end.max((at + CHUNK as u64).min(self.end));
            let len = (read_end - at) as usize;
            buf.bytes.resize(len, 0);
            if let Err(e) = self.file.read_exact_at(&mut buf.bytes, at) {
                buf.bytes.clear();
                return Err(e);
            }
            buf.start = at;
        }
        let from = (at - buf.start) as usize;
        let to = (want_end - buf.start) as usize;
        Ok(&buf.bytes[from..to])
    }

    /// Tries to decode a record at `at`.
    fn record_at(&mut self, at: u64) -> io::Result<Option<(Record, usize)>> {
        let head = self.window(at, FRAME)?;
        if head.len() < FRAME || head[..4] != MAGIC {
            return Ok(None);
        }
        let body_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if body_len > MAX_BODY {
            return Ok(None);
        }
        let bytes = self.window(at, FRAME + body_len)?;
        Ok(decode(bytes))
    }

    /// The next item, or `None` at the end of the region.
    pub fn next_item(&mut self) -> io::Result<Option<Found>> {
        if self.offset >= self.end {
            return Ok(None);
        }
        let at = self.offset;
        if let Some((record, len)) = self.record_at(at)? {
            self.offset += len as u64;
            return Ok(Some(Found::Record {
                offset: at,
                len: len as u64,
                record,
            }));
        }
        // Resynchronise: the next magic that starts a valid record.
        let mut probe = at + 1;
        while probe + FRAME as u64 <= self.end {
            let window = self.window(probe, CHUNK)?;
            match window.windows(4).position(|w| w == MAGIC) {
                Some(i) => {
                    let candidate = probe + i as u64;
                    if self.record_at(candidate)?.is_some() {
                        self.offset = candidate;
                        return Ok(Some(Found::Corrupt {
                            from: at,
                            to: candidate,
                        }));
                    }
                    probe = candidate + 1;
                }
                None => probe += (window.len().max(4) - 3) as u64,
            }
        }
        self.offset = self.end;
        Ok(Some(Found::TornTail { from: at }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_header() {
        for header in [None, Some(&b"crawler"[..]), Some(&b""[..])] {
            let mut buf = Vec::new();
            encode(&mut buf, 7, 1234, b"site", header, b"payload bytes");
            assert_eq!(buf.len(), encoded_len(b"site", header, b"payload bytes"));
            let (r, len) = decode(&buf).unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(r.seq, 7);
            assert_eq!(r.appended_at_ms, 1234);
            assert_eq!(r.key, b"site");
            assert_eq!(r.header.as_deref(), header);
            assert_eq!(r.payload, b"payload bytes");
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, b"k", Some(b"h"), b"some payload");
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad).is_none(), "byte {i} bit {bit}");
            }
        }
    }
}
