//! Bytes on disk. A segment starts with [`SEGMENT_MAGIC`] and the format
//! version (u32 LE); then records, each
//!
//! ```text
//! magic "HRC1" | length u32 LE | CRC-32C of the payload u32 LE | payload (postcard Record)
//! ```
//!
//! A reader that meets a bad record looks for the next magic at which a
//! whole, checksummed record starts, so one flipped byte costs one record.

use crate::Error;
use crate::record::Record;

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"HILTREC\n";
/// The format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Segment header: magic + version.
pub(crate) const SEGMENT_HEADER: usize = 12;

pub(crate) const RECORD_MAGIC: [u8; 4] = *b"HRC1";
/// Record header: magic, length, CRC.
pub(crate) const RECORD_HEADER: usize = 12;
/// No record is larger (hiltd's largest answer is 64 MiB of gRPC; x, θ
/// and y of it fit well inside).
pub(crate) const MAX_RECORD: usize = 256 << 20;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// `rec` framed, ready to append.
pub(crate) fn encode(rec: &Record) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; RECORD_HEADER];
    out = postcard::to_extend(rec, out)
        .map_err(|e| Error::Format(format!("record does not encode: {e}")))?;
    let len = out.len() - RECORD_HEADER;
    if len > MAX_RECORD {
        return Err(Error::Format(format!(
            "a record of {len} bytes is over the {MAX_RECORD}-byte limit"
        )));
    }
    let crc = crc32c::crc32c(&out[RECORD_HEADER..]);
    out[..4].copy_from_slice(&RECORD_MAGIC);
    out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// What is at `at` in `bytes`.
#[derive(Debug)]
pub(crate) enum At {
    /// A whole record, `len` bytes framed.
    Record(Box<Record>, usize),
    /// Fewer bytes left than the record needs: a torn write if nothing
    /// valid follows.
    Short,
    /// Not a record here (why).
    Bad(String),
}

pub(crate) fn decode_at(bytes: &[u8], at: usize) -> At {
    let rest = &bytes[at.min(bytes.len())..];
    if rest.len() < RECORD_HEADER {
        return At::Short;
    }
    if rest[..4] != RECORD_MAGIC {
        return At::Bad("no record magic".into());
    }
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    if len > MAX_RECORD {
        return At::Bad(format!("length {len} is over the limit"));
    }
    let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
    let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return At::Short;
    };
    if crc32c::crc32c(payload) != crc {
        return At::Bad("checksum mismatch".into());
    }
    match postcard::from_bytes::<Record>(payload) {
        Ok(r) => At::Record(Box::new(r), RECORD_HEADER + len),
        Err(e) => At::Bad(format!("payload does not decode: {e}")),
    }
}

/// The next offset after `from` where a whole record starts.
pub(crate) fn next_record(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + RECORD_MAGIC.len() <= bytes.len() {
        let hit = bytes[i..]
            .windows(RECORD_MAGIC.len())
            .position(|w| w == RECORD_MAGIC)?;
        let at = i + hit;
        if let At::Record(..) = decode_at(bytes, at) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}
