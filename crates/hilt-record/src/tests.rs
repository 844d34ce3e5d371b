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
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        off,
        "cut at the torn record"
    );
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
    let one = crate::frame::encode(&rec("dev", 8)).unwrap().len() as u64;
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
