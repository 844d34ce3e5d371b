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
use crate::encode::RecordRef;
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

/// One record, framed, as pieces to write with one `pwritev(2)`: the
/// header, and the payload as postcard writes it, where the large f32
/// arrays are not copied but borrowed from the measurement.
#[derive(Debug)]
pub(crate) struct Framed<'a, 'b> {
    header: [u8; RECORD_HEADER],
    small: &'b [u8],
    parts: Vec<Part>,
    big: Vec<&'a [u8]>,
}

#[derive(Debug, Clone)]
enum Part {
    Small(std::ops::Range<usize>),
    Big(usize),
}

impl Framed<'_, '_> {
    /// The pieces in order.
    pub(crate) fn slices(&self) -> Vec<std::io::IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.parts.len() + 1);
        out.push(std::io::IoSlice::new(&self.header));
        out.extend(self.parts.iter().map(|p| {
            std::io::IoSlice::new(match p {
                Part::Small(r) => &self.small[r.clone()],
                Part::Big(i) => self.big[*i],
            })
        }));
        out
    }
}

/// A postcard flavor that keeps everything in `small`, except a write
/// of one of the `big` slices themselves, which it notes by index: serde
/// hands the flavor the very slice a [`crate::encode::Values`] borrows,
/// so telling it apart is a comparison of address and length.
struct Scatter<'a, 'b> {
    big: &'b [&'a [u8]],
    small: &'b mut Vec<u8>,
    parts: Vec<Part>,
    run: usize,
}

impl Scatter<'_, '_> {
    fn close_run(&mut self) {
        if self.small.len() > self.run {
            self.parts.push(Part::Small(self.run..self.small.len()));
            self.run = self.small.len();
        }
    }
}

impl postcard::ser_flavors::Flavor for Scatter<'_, '_> {
    type Output = Vec<Part>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let borrowed = self
            .big
            .iter()
            .position(|b| std::ptr::eq(b.as_ptr(), data.as_ptr()) && b.len() == data.len());
        match borrowed {
            Some(i) if !data.is_empty() => {
                self.close_run();
                self.parts.push(Part::Big(i));
            }
            _ => self.small.extend_from_slice(data),
        }
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.small.push(data);
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Vec<Part>> {
        self.close_run();
        Ok(self.parts)
    }
}

/// `rec` framed; `small` (cleared first) holds every byte that is not
/// one of the record's large arrays, so a writer that keeps it costs no
/// allocation per record once it has grown.
pub(crate) fn frame<'a, 'b>(
    rec: &RecordRef<'a>,
    small: &'b mut Vec<u8>,
) -> Result<Framed<'a, 'b>, Error> {
    small.clear();
    let big = rec.large_arrays();
    let parts = postcard::serialize_with_flavor(
        rec,
        Scatter {
            big: &big,
            small,
            parts: Vec::with_capacity(16),
            run: 0,
        },
    )
    .map_err(|e| Error::Format(format!("record does not encode: {e}")))?;
    let mut framed = Framed {
        header: [0; RECORD_HEADER],
        small,
        parts,
        big,
    };
    let slices = framed.slices();
    let len: usize = slices[1..].iter().map(|s| s.len()).sum();
    if len > MAX_RECORD {
        return Err(Error::Format(format!(
            "a record of {len} bytes is over the {MAX_RECORD}-byte limit"
        )));
    }
    let crc = slices[1..]
        .iter()
        .fold(0, |crc, s| crc32c::crc32c_append(crc, s));
    drop(slices);
    framed.header[..4].copy_from_slice(&RECORD_MAGIC);
    framed.header[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    framed.header[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(framed)
}

/// `rec` framed into one buffer (tests, and what a reader compares).
#[cfg(test)]
pub(crate) fn encode(rec: &RecordRef<'_>) -> Vec<u8> {
    let mut small = Vec::new();
    let framed = frame(rec, &mut small).unwrap_or_else(|e| panic!("{e}"));
    framed
        .slices()
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect()
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
