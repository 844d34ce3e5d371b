//! Reserved segment space mapped into memory, so that keeping a record on
//! the answer's path is one copy into page-cache pages that are already
//! there, mapped writable and dirty.
//!
//! Why: a buffered `pwrite` into fresh pages spends two thirds of its time
//! in ext4's per-page bookkeeping (buffer heads created, blocks looked up,
//! pages marked dirty), measured with `perf` on the `recording` bench: ~48
//! µs of a 135 kB record against ~15 µs for the copy. Faulting the pages
//! in for writing (`MADV_POPULATE_WRITE`) moves that bookkeeping onto the
//! writer thread, ahead of the records.
//!
//! What keeps it sound:
//! - A window covers only space `fallocate` gave the file, and the file is
//!   never cut below a live window: `Segments` drops its windows before any
//!   `set_len` (seal, a failed write).
//! - Copies go only into bytes the writer thread faulted in since the last
//!   `fsync` (`Segments::ready`): an fsync cleans the pages and
//!   write-protects them, so the next touch would fault on the answer's
//!   path, and a fault that fails is a `SIGBUS`, not an error. Everything
//!   else goes through `pwrite`, which reports errors as errors.
//! - Windows are used only on file systems whose write fault on space
//!   already allocated needs no new allocation (ext4, XFS) or that never
//!   write pages back (tmpfs). Elsewhere (btrfs, NFS, ...) a write fault
//!   on a full disk could fail, so there the recorder writes with
//!   `pwrite` only. The kernel's own writeback may still clean a faulted
//!   page before it is copied into; the fault that follows then succeeds
//!   on those file systems unless the file system itself has shut down.
//!
//! Faulting pages in ahead makes them dirty zeros, which a group commit
//! writes if no record has covered them yet; the lead is therefore kept
//! small (a few records: [`Window::lead`]), not the whole reservation.

use std::fs::File;
use std::io::IoSlice;

/// How far ahead of the writes pages are faulted in: a few records' worth,
/// so a group commit writes at most that much of zeros.
pub(crate) fn lead(last_record: u64) -> u64 {
    (4 * last_record).clamp(64 << 10, 4 << 20)
}

/// Whether windows are safe on the file system holding `file`.
pub(crate) fn supported(file: &File) -> bool {
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    const TMPFS: u64 = 0x0102_1994;
    rustix::fs::fstatfs(file)
        .map(|s| matches!(s.f_type as u64, EXT4 | XFS | TMPFS))
        .unwrap_or(false)
}

/// The file range `[from, to)`, mapped shared and writable.
pub(crate) struct Window {
    map: memmap2::MmapRaw,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl Window {
    /// Map `[from, to)` of `file`, which must lie inside space the file
    /// already has (a reservation just made).
    pub(crate) fn map(file: &File, from: u64, to: u64) -> std::io::Result<Window> {
        let len = usize::try_from(to - from).map_err(std::io::Error::other)?;
        let map = memmap2::MmapOptions::new()
            .offset(from)
            .len(len)
            .map_raw(file)?;
        Ok(Window { map, from, to })
    }

    /// Fault `[from, to)` (file offsets, clipped to the window) in for
    /// writing: the pages are read in (zeros), given their buffers and
    /// marked dirty here, not on the answer's path.
    pub(crate) fn prepare(&self, from: u64, to: u64) -> std::io::Result<()> {
        let (a, b) = (from.max(self.from), to.min(self.to));
        if a >= b {
            return Ok(());
        }
        self.map.advise_range(
            memmap2::Advice::PopulateWrite,
            (a - self.from) as usize,
            (b - a) as usize,
        )
    }

    /// Copy `slices` (`len` bytes in all) to file offset `at`; false, and
    /// nothing copied, unless all of it lies in this window. The caller
    /// guarantees `[at, at + len)` was prepared since the last fsync and
    /// that nothing else writes it meanwhile.
    pub(crate) fn put(&self, slices: &[IoSlice<'_>], at: u64, len: u64) -> bool {
        if at < self.from || at.saturating_add(len) > self.to {
            return false;
        }
        let mut off = (at - self.from) as usize;
        let base = self.map.as_mut_ptr();
        for s in slices {
            // SAFETY: `off + s.len()` stays within the mapping (the range
            // check above, and the slices sum to `len`); the mapping lives
            // as long as `self` and the file is not cut below it while it
            // does (module doc); the pages were faulted in writable; no
            // other thread writes this range (appends hold the segments'
            // lock), and a source slice cannot overlap a shared file
            // mapping it did not come from.
            #[allow(unsafe_code)]
            unsafe {
                stream_copy(base.add(off), s);
            }
            off += s.len();
        }
        fence();
        true
    }
}

/// Copy `src` to `dst` with stores that bypass the cache: the record is
/// not read again by this process (the kernel writes it back from memory),
/// and not pulling each destination line into the cache first halves the
/// copy (135 kB: 6 µs against 13 µs with `memcpy`, measured on this
/// project's VM). Call [`fence`] before the copy is relied on.
///
/// # Safety
/// `dst..dst + src.len()` must be valid for writes and not overlap `src`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn stream_copy(dst: *mut u8, src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    // SSE2 is part of x86_64: no feature detection needed.
    let n = src.len();
    let head = dst.align_offset(16).min(n);
    // SAFETY (all below): in bounds of `src` and of `dst` by the caller's
    // promise; the streamed stores are 16-byte aligned (`head`).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
        let mut i = head;
        while i + 64 <= n {
            let s = src.as_ptr().add(i).cast::<__m128i>();
            let d = dst.add(i).cast::<__m128i>();
            let (a, b, c, e) = (
                _mm_loadu_si128(s),
                _mm_loadu_si128(s.add(1)),
                _mm_loadu_si128(s.add(2)),
                _mm_loadu_si128(s.add(3)),
            );
            _mm_stream_si128(d, a);
            _mm_stream_si128(d.add(1), b);
            _mm_stream_si128(d.add(2), c);
            _mm_stream_si128(d.add(3), e);
            i += 64;
        }
        std::ptr::copy_nonoverlapping(src.as_ptr().add(i), dst.add(i), n - i);
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn stream_copy(dst: *mut u8, src: &[u8]) {
    // SAFETY: the caller's promise.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}

/// Order the streamed stores before whatever follows (the record's
/// acknowledgement).
fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions (SSE, part of x86_64).
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_record_put_through_a_window_is_in_the_file_and_one_outside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, 1 << 20).unwrap();
        let w = Window::map(&file, 4096 + 17, 1 << 20).unwrap();
        w.prepare(0, 1 << 20).unwrap();
        let (a, b): ([u8; 3], Vec<u8>) =
            ([1u8, 2, 3], (0..5000).map(|i| (i % 251) as u8).collect());
        let s = [IoSlice::new(&a), IoSlice::new(&b)];
        assert!(w.put(&s, 9000, 5003));
        assert!(!w.put(&s, 4096, 5003), "starts before the window");
        assert!(!w.put(&s, (1 << 20) - 5002, 5003), "ends past the window");
        let mut back = vec![0u8; 5005];
        file.read_exact_at(&mut back, 8999).unwrap();
        assert_eq!(back[0], 0);
        assert_eq!(&back[1..4], &a);
        assert_eq!(&back[4..5004], &b[..]);
        assert_eq!(back[5004], 0);
    }
}
