//! The recording's promises, on real files.

use std::time::Duration;

use crate::*;

fn rec(device: &str, rows: u32) -> Record {
    let m = |r: u32, c: u32, base: f32| Matrix {
        rows: r,
        cols: c,
        data: (0..r * c).map(|i| base + i as f32).collect(),
    };
    Record {
        device: device.into(),
        seq: 0,
        lease: lease_tag("a-lease"),
        token: "alice".into(),
        peer: "127.0.0.1:5555".into(),
        wall_start_ns: 1,
        wall_end_ns: 2,
        t_start: vec![0.0; rows as usize],
        t_end: vec![1.0; rows as usize],
        calibration_id: "cal".into(),
        spec_hash: "s".into(),
        config_hash: "c".into(),
        version: "0".into(),
        git_revision: "g".into(),
        repeats: 1,
        x: m(rows, 4, 0.5),
        theta: m(1, 2, 0.25),
        y: m(rows, 3, 1.5),
        y_std: None,
        y_repeats: None,
        flags: vec![0; rows as usize],
    }
}

fn opts(segment_bytes: u64) -> WriterOptions {
    WriterOptions {
        fsync: Fsync::Interval(Duration::from_millis(50)),
        segment_bytes,
        retain_bytes: None,
        retain_age: None,
    }
}

fn quiet() -> FailureObserver {
    std::sync::Arc::new(|_| {})
}

fn all(dir: &std::path::Path, device: &str) -> Vec<Record> {
    scan_device(dir, device)
        .unwrap()
        .into_iter()
        .flat_map(|s| s.records.into_iter().map(|(_, r)| r))
        .collect()
}

#[tokio::test]
async fn records_come_back_in_order_and_numbering_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    for rows in 1..=3 {
        r.append(rec("dev", rows)).await.unwrap();
    }
    drop(r);
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    assert_eq!(r.append(rec("dev", 4)).await.unwrap(), 4);
    drop(r);
    let got = all(dir.path(), "dev");
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let mut want = rec("dev", 2);
    want.seq = 2;
    assert_eq!(got[1], want, "bit for bit");
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    for rows in 1..=3 {
        r.append(rec("dev", rows)).await.unwrap();
    }
    drop(r);
    let seg = segments(&dir.path().join("dev")).unwrap().remove(0);
    let len = std::fs::metadata(&seg).unwrap().len();
    // A crash mid-write: the last record is 7 bytes short.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    let scan = scan_segment(&seg).unwrap();
    assert_eq!(scan.records.len(), 2);
    let (off, torn) = scan.torn_tail.unwrap();
    assert!(scan.corrupt.is_empty());
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    let cut = scan_segment(&seg).unwrap();
    assert_eq!(cut.end, off, "cut at the torn record");
    assert!(cut.torn_tail.is_none() && cut.corrupt.is_empty());
    assert!(torn > 0);
    assert_eq!(
        r.append(rec("dev", 9)).await.unwrap(),
        3,
        "numbering goes on"
    );
    drop(r);
    assert_eq!(all(dir.path(), "dev").len(), 3);
}

#[tokio::test]
async fn a_flipped_byte_costs_exactly_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    for rows in 1..=5 {
        r.append(rec("dev", rows)).await.unwrap();
    }
    drop(r);
    let seg = segments(&dir.path().join("dev")).unwrap().remove(0);
    let before = scan_segment(&seg).unwrap();
    let (third, _) = before.records[2];
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[third as usize + 40] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let after = scan_segment(&seg).unwrap();
    assert_eq!(after.corrupt.len(), 1, "{:?}", after.corrupt);
    assert_eq!(after.corrupt[0].offset, third);
    assert!(
        after.corrupt[0].why.contains("checksum"),
        "{:?}",
        after.corrupt
    );
    let seqs: Vec<u64> = after.records.iter().map(|(_, r)| r.seq).collect();
    assert_eq!(seqs, [1, 2, 4, 5]);
    assert!(after.torn_tail.is_none());
}

#[tokio::test]
async fn segments_rotate_by_size_and_the_oldest_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let one =
        crate::frame::encode(&crate::encode::RecordRef::of_record(&rec("dev", 8), 1)).len() as u64;
    let mut o = opts(3 * one + 12);
    o.retain_bytes = Some(7 * one);
    let r = Recorder::open(dir.path(), "dev", o, quiet()).unwrap();
    for _ in 0..12 {
        r.append(rec("dev", 8)).await.unwrap();
    }
    drop(r);
    let segs = segments(&dir.path().join("dev")).unwrap();
    assert!(segs.len() >= 2, "{segs:?}");
    let seqs: Vec<u64> = all(dir.path(), "dev").iter().map(|r| r.seq).collect();
    // Whole segments of 3 went, oldest first; the rest is contiguous.
    assert_eq!(*seqs.last().unwrap(), 12);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seqs[0] > 1, "nothing was deleted: {seqs:?}");
    let total: u64 = segs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // Retention runs at each rotation: the total stays within the limit
    // plus the one segment being filled.
    assert!(
        total <= 7 * one + (3 * one + 12),
        "{total}, one record {one}"
    );
}

#[test]
fn a_file_that_is_not_a_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.hrec");
    std::fs::write(&p, b"not a recording").unwrap();
    let e = scan_segment(&p).unwrap_err().to_string();
    assert!(e.contains("not a hilt recording segment"), "{e}");
}

#[test]
fn the_lease_tag_hides_the_lease() {
    let t = lease_tag("0123456789abcdef0123456789abcdef");
    assert_eq!(t.len(), 16);
    assert!(!"0123456789abcdef0123456789abcdef".contains(&t));
    assert_eq!(lease_tag(""), "");
}

/// A measurement as a device answers it, with every optional part and a
/// θ that is not contiguous in memory (the encoder's other path).
fn measurement() -> hilt_core::Measurement {
    use ndarray::{Array2, Array3};
    let y = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32 * 0.5);
    let theta = Array2::from_shape_fn((2, 3), |(i, j)| i as f32 - 1.5 * j as f32).reversed_axes();
    assert!(
        theta.as_slice().is_none(),
        "the test needs a non-contiguous θ"
    );
    hilt_core::Measurement {
        y_repeats: Some(Array3::from_shape_fn((2, 3, 2), |(r, i, j)| {
            (r * 6 + i * 2 + j) as f32
        })),
        y_std: Some(y.mapv(|v| v / 10.0)),
        applied_x: Array2::from_shape_fn((3, 5), |(i, j)| f32::from(i as u8) - 0.25 * j as f32),
        applied_theta: theta,
        y,
        flags: vec![
            hilt_core::SampleFlags::default(),
            hilt_core::SampleFlags {
                saturated: true,
                clamped: false,
            },
            hilt_core::SampleFlags {
                saturated: true,
                clamped: true,
            },
        ],
        t_start: vec![0.0, 1.0, 2.0],
        t_end: vec![0.5, 1.5, 2.5],
        wall_start: std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        wall_end: std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
        calibration_id: "cal-7".into(),
        device_id: "dev".into(),
    }
}

#[tokio::test]
async fn a_kept_measurement_reads_back_as_the_device_answered_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    let m = std::sync::Arc::new(measurement());
    let ctx = Context {
        lease: lease_tag("a-lease"),
        token: "alice".into(),
        peer: "127.0.0.1:5555".into(),
        spec_hash: "s".into(),
        config_hash: "c".into(),
        version: "0".into(),
        git_revision: "g".into(),
    };
    let mut kept = Vec::new();
    r.keep(std::sync::Arc::clone(&m), 2, ctx.clone(), |k| kept.push(k));
    r.keep(std::sync::Arc::clone(&m), 2, ctx, |k| kept.push(k));
    let mut seqs = Vec::new();
    for k in kept {
        seqs.push(k.written().await.unwrap());
    }
    assert_eq!(seqs, [1, 2]);
    drop(r);
    let got = all(dir.path(), "dev");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].seq, 2);
    assert_eq!((got[1].repeats, got[1].token.as_str()), (2, "alice"));
    assert_eq!(got[1].flags, [0, 1, 3]);
    assert_eq!(got[1].measurement().unwrap(), *m, "bit for bit");
}

#[tokio::test]
async fn a_crash_leaves_reserved_space_that_is_neither_damage_nor_data() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    for rows in 1..=3 {
        r.append(rec("dev", rows)).await.unwrap();
    }
    let seg = segments(&dir.path().join("dev")).unwrap().remove(0);
    let scan = scan_segment(&seg).unwrap();
    assert!(
        scan.bytes > scan.end,
        "space is reserved ahead ({} bytes, written to {})",
        scan.bytes,
        scan.end
    );
    // hiltd killed: the recorder never seals its segment.
    std::mem::forget(r);
    let scan = scan_segment(&seg).unwrap();
    assert_eq!(scan.records.len(), 3);
    assert!(scan.corrupt.is_empty() && scan.torn_tail.is_none());
    // …and a record torn in the middle of its write, zeros after it.
    let mut bytes = std::fs::read(&seg).unwrap();
    let (third, _) = scan.records[2];
    for b in &mut bytes[third as usize + 30..scan.end as usize] {
        *b = 0;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let torn = scan_segment(&seg).unwrap();
    assert_eq!(torn.records.len(), 2);
    assert_eq!(
        torn.torn_tail,
        Some((third, 30)),
        "the torn bytes, not the zeros"
    );
    let r = Recorder::open(dir.path(), "dev", opts(1 << 20), quiet()).unwrap();
    assert_eq!(
        r.append(rec("dev", 9)).await.unwrap(),
        3,
        "numbering goes on"
    );
    drop(r);
    let sealed = scan_segment(&seg).unwrap();
    assert_eq!(sealed.bytes, sealed.end, "sealed: nothing reserved is left");
    assert_eq!(sealed.records.len(), 3);
}

#[test]
fn the_scattered_frame_is_the_postcard_encoding_of_the_record() {
    let m = measurement();
    let ctx = Context::default();
    let rec = crate::encode::RecordRef::of(&m, 2, &ctx, 7);
    let framed = crate::frame::encode(&rec);
    let whole = postcard::to_allocvec(&rec).unwrap();
    assert_eq!(&framed[12..], &whole[..]);
    assert_eq!(framed[4..8], (whole.len() as u32).to_le_bytes());
    assert_eq!(framed[8..12], crc32c::crc32c(&whole).to_le_bytes());
}

/// The two ways a record reaches the file, by hand in the order the
/// writer thread would take them: copied through a window faulted in
/// ahead, and written after an fsync made those pages clean again.
#[test]
fn records_copied_through_a_window_and_written_after_a_sync_read_back_alike() {
    use std::sync::{Arc, Mutex};

    use crate::encode::RecordRef;
    use crate::frame::frame;
    use crate::segment::Segments;

    let dir = tempfile::tempdir().unwrap();
    let maps = crate::window::supported(&std::fs::File::open(dir.path()).unwrap());
    let mut s = Segments::open(
        dir.path().join("dev"),
        opts(1 << 20),
        Arc::new(Mutex::new(None)),
    )
    .unwrap();
    let prepare = |s: &mut Segments| match s.preparation() {
        Some(p) => {
            assert!(maps, "pages faulted in on a file system without windows");
            let ok = p.make().is_ok();
            s.prepared(&p, ok);
            assert!(ok && s.ready_ahead() > 0, "faulted in ahead of the writes");
        }
        None => assert!(!maps, "nothing to fault in, though windows are used here"),
    };
    let r = s.reservation().unwrap();
    let made = r.make();
    s.reserved(&r, made);
    let mut buf = Vec::new();
    let mut put = |s: &mut Segments, rows: u32| {
        let want = rec("dev", rows);
        let seq = s.next_seq();
        let framed = frame(&RecordRef::of_record(&want, seq), &mut buf).unwrap();
        assert_eq!(s.append(&framed).unwrap(), seq);
    };
    prepare(&mut s);
    put(&mut s, 3);
    s.sync().unwrap();
    assert_eq!(
        s.ready_ahead(),
        0,
        "a sync leaves nothing ready to copy into"
    );
    put(&mut s, 5);
    prepare(&mut s);
    put(&mut s, 7);
    s.seal().unwrap();
    let got = all(dir.path(), "dev");
    for (k, rows) in [3, 5, 7].into_iter().enumerate() {
        let mut want = rec("dev", rows);
        want.seq = k as u64 + 1;
        assert_eq!(got[k], want, "record {} bit for bit", k + 1);
    }
    assert_eq!(got.len(), 3);
}
