//! The recording kept by a real hiltd: killed with SIGKILL in the middle
//! of a 1 000-batch Stream, every batch the client got an answer for is in
//! the recording, bit for bit, and the next hiltd goes on numbering after
//! it; a device whose recording cannot be written refuses batches and
//! takes them again by itself once it can.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use common::Hiltd;
use hilt_client::Client;
use hilt_core::{Batch, Measurement};
use ndarray::Array2;
use tonic::Code;

const LOOP: &str = r#"
[[device]]
id = "loop"
kind = "loopback"
emulate_seconds_per_sample = 0.0003
[device.loopback]
n_in = 4
n_par = 1
"#;

fn batch(k: usize) -> Batch {
    Batch::shared(
        Array2::from_shape_fn((3, 4), |(i, j)| (k * 12 + i * 4 + j) as f32 * 1e-3),
        &[k as f32 * 1e-3],
    )
}

fn start(dir: &std::path::Path, config: &str) -> Hiltd {
    let record = dir.to_str().unwrap();
    Hiltd::launch(
        Some(config),
        &[],
        &["--listen", "127.0.0.1:0", "--record-dir", record],
    )
}

#[tokio::test]
async fn kill_9_mid_stream_loses_no_acknowledged_measurement() {
    let rec = tempfile::tempdir().unwrap();
    let mut d = start(rec.path(), LOOP);
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("loop", Duration::from_secs(30)).await.unwrap();
    let (mut tx, mut rx) = lease.stream(8).await.unwrap().into_split();
    let sender = tokio::spawn(async move {
        for k in 0..1000 {
            if tx.send(&batch(k)).await.is_err() {
                break;
            }
        }
    });
    let mut got: Vec<Measurement> = Vec::new();
    while let Some(Ok((_, Ok(m)))) = rx.recv().await {
        got.push(m);
        if got.len() == 300 {
            d.kill();
        }
    }
    sender.abort();
    assert!(
        got.len() >= 300 && got.len() < 1000,
        "{} answers",
        got.len()
    );

    let records: Vec<hilt_record::Record> = hilt_record::scan_device(rec.path(), "loop")
        .unwrap()
        .into_iter()
        .flat_map(|s| s.records.into_iter().map(|(_, r)| r))
        .collect();
    assert!(
        records.len() >= got.len(),
        "{} records for {} answers",
        records.len(),
        got.len()
    );
    for (k, (m, r)) in got.iter().zip(&records).enumerate() {
        assert_eq!(r.seq, k as u64 + 1);
        assert_eq!(r.x.to_array().unwrap(), m.applied_x, "batch {k}: x");
        assert_eq!(r.theta.to_array().unwrap(), m.applied_theta, "batch {k}: θ");
        let y = r.y.to_array().unwrap();
        let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y), bits(&m.y), "batch {k}: y bit for bit");
        assert_eq!(r.token, "anonymous");
        assert_eq!(r.lease, hilt_record::lease_tag(lease.id()));
        assert!(
            !r.lease.is_empty() && r.lease != lease.id(),
            "the lease id is a secret"
        );
    }

    // The next hiltd recovers the tail and numbers on.
    let d2 = start(rec.path(), LOOP);
    let c2 = Client::connect(d2.url()).await.unwrap();
    let l2 = c2.acquire("loop", Duration::from_secs(30)).await.unwrap();
    l2.execute(&batch(5000)).await.unwrap();
    // A remote trainer pulls its measurements back: the first run's
    // lease, bit for bit, in order.
    use futures::StreamExt;
    let pulled: Vec<(u64, Measurement)> = c2
        .read_recording(hilt_client::v1::ReadRecordingRequest {
            device_id: "loop".into(),
            lease_id: lease.id().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        pulled.len(),
        records.len(),
        "the second run's batch is another lease"
    );
    for ((seq, m), (k, want)) in pulled.iter().zip(got.iter().enumerate()) {
        assert_eq!(*seq, k as u64 + 1);
        assert_eq!(m.y, want.y);
        assert_eq!(m.applied_x, want.applied_x);
        assert_eq!(m.t_start, want.t_start);
    }
    let err = c2
        .read_recording(hilt_client::v1::ReadRecordingRequest {
            device_id: "nope".into(),
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    drop(l2);
    drop(d2);
    let after: Vec<u64> = hilt_record::scan_device(rec.path(), "loop")
        .unwrap()
        .into_iter()
        .flat_map(|s| s.records.into_iter().map(|(_, r)| r.seq))
        .collect();
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "numbering has a gap"
    );
    assert_eq!(after.len(), records.len() + 1);
}

#[tokio::test]
async fn a_recording_that_cannot_be_written_refuses_batches_until_it_can() {
    let rec = tempfile::tempdir().unwrap();
    // Tiny segments, so the next batch needs a new segment file.
    let config = format!("[recording]\ndir = \"unused\"\nsegment_mb = 0.001\n{LOOP}");
    let d = start(rec.path(), &config);
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("loop", Duration::from_secs(30)).await.unwrap();
    lease.execute(&batch(0)).await.unwrap();
    let mut events = c.watch("loop").await.unwrap();
    // The device's directory becomes a file: no segment can be created.
    let dev = rec.path().join("loop");
    std::fs::rename(&dev, rec.path().join("loop.moved")).unwrap();
    std::fs::write(&dev, b"in the way").unwrap();
    let mut refused = None;
    for k in 1..50 {
        if let Err(e) = lease.execute(&batch(k)).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("a batch was refused once the segment could not be made");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    assert!(e.to_string().contains("recording failed"), "{e}");
    // The failure shows in the device's status…
    use futures::StreamExt;
    loop {
        let ev = events.next().await.unwrap().unwrap();
        if ev.status.recording_error.is_some() {
            break;
        }
    }
    // …and the next batch is refused before it is measured.
    let before = c.describe("loop").await.unwrap().1.batches_done;
    let e = lease.execute(&batch(99)).await.unwrap_err();
    assert!(e.to_string().contains("recording failed"), "{e}");
    assert_eq!(c.describe("loop").await.unwrap().1.batches_done, before);
    // Writing works again: the device takes batches by itself.
    std::fs::remove_file(&dev).unwrap();
    std::fs::create_dir(&dev).unwrap();
    loop {
        let ev = events.next().await.unwrap().unwrap();
        if ev.status.recording_error.is_none() {
            break;
        }
    }
    lease.execute(&batch(100)).await.unwrap();
    assert!(d.log().contains("recording works again"), "{}", d.log());
}
