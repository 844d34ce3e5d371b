//! Reading segments back: every whole record in order, every corrupt
//! stretch with its offset, and a torn tail (a record cut short or failing
//! its checksum with nothing valid after it: what a crash mid-write
//! leaves). Zero bytes after the last record are space the writer
//! reserved ahead of its writes, not damage: the written part ends there.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::frame::{At, SEGMENT_HEADER, SEGMENT_MAGIC, decode_at, next_record};
use crate::record::Record;

/// A stretch of a segment that holds no readable record.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrupt {
    /// Byte offset in the segment file.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
    /// What was wrong at `offset`.
    pub why: String,
}

/// One segment, read.
#[derive(Debug)]
pub struct SegmentScan {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Where the written part ends: after the last record or corrupt
    /// stretch, before a torn tail and the reserved zeros.
    pub end: u64,
    /// Every whole record, with its offset.
    pub records: Vec<(u64, Record)>,
    /// Stretches skipped in the middle.
    pub corrupt: Vec<Corrupt>,
    /// Where a torn tail begins and how long it is.
    pub torn_tail: Option<(u64, u64)>,
}

/// Read the segment at `path`.
pub fn scan_segment(path: &Path) -> Result<SegmentScan, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    scan_bytes(path, &bytes)
}

pub(crate) fn scan_bytes(path: &Path, bytes: &[u8]) -> Result<SegmentScan, Error> {
    if bytes.len() < SEGMENT_HEADER || bytes[..8] != SEGMENT_MAGIC {
        return Err(Error::Format(format!(
            "{}: not a hilt recording segment (no {:?} header)",
            path.display(),
            String::from_utf8_lossy(&SEGMENT_MAGIC).trim_end()
        )));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != crate::FORMAT_VERSION {
        return Err(Error::Format(format!(
            "{}: recording format {version}; this hilt reads format {}",
            path.display(),
            crate::FORMAT_VERSION
        )));
    }
    let mut scan = SegmentScan {
        path: path.to_path_buf(),
        bytes: bytes.len() as u64,
        end: bytes.len() as u64,
        records: Vec::new(),
        corrupt: Vec::new(),
        torn_tail: None,
    };
    // Reserved, never written: zeros to the end of the file.
    let written = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let mut at = SEGMENT_HEADER;
    while at < written {
        let why = match decode_at(bytes, at) {
            At::Record(r, len) => {
                scan.records.push((at as u64, *r));
                at += len;
                continue;
            }
            At::Short => "cut short".to_string(),
            At::Bad(why) => why,
        };
        match next_record(bytes, at + 1) {
            Some(next) => {
                scan.corrupt.push(Corrupt {
                    offset: at as u64,
                    len: (next - at) as u64,
                    why,
                });
                at = next;
            }
            None => {
                scan.torn_tail = Some((at as u64, (written - at) as u64));
                break;
            }
        }
    }
    scan.end = at as u64;
    Ok(scan)
}

/// The segment files of one device's directory, oldest first.
pub fn segments(device_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(device_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(device_dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(device_dir, e))?.path();
        if path.extension().is_some_and(|x| x == "hrec") {
            out.push(path);
        }
    }
    // Names are the first sequence number, zero-padded: order by name.
    out.sort();
    Ok(out)
}

/// Every segment of `device` under the recording `dir`, read in order.
pub fn scan_device(dir: &Path, device: &str) -> Result<Vec<SegmentScan>, Error> {
    segments(&dir.join(device))?
        .iter()
        .map(|p| scan_segment(p))
        .collect()
}
