//! The replay backend, tried across processes: a session recorded on a
//! simulated SHG rig is served again by a second hiltd, answer for answer
//! and bit for bit, and a request that leaves the recorded path is
//! refused naming the record and the first element that differs.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use common::Hiltd;
use hilt_client::Client;
use hilt_core::{Batch, Measurement};
use ndarray::Array2;
use tonic::Code;

const RIG: &str = r#"
[[device]]
id = "shg0"
kind = "shg"
seed = 11
[device.limits]
input = [0.0, 1.0]
param = [0.0, 1.0]
"#;

fn batches() -> Vec<Batch> {
    (0..4)
        .map(|k| {
            let mut b = Batch::shared(
                Array2::from_shape_fn((3, 12), |(i, j)| ((k * 7 + i * 3 + j) % 10) as f32 / 9.0),
                &[0.1 * k as f32; 40],
            );
            b.repeats = 1 + k as u32 % 2;
            b.return_repeats = k == 1;
            b
        })
        .collect()
}

fn same(a: &Measurement, b: &Measurement) {
    let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.y), bits(&b.y));
    assert_eq!(a.applied_x, b.applied_x);
    assert_eq!(a.applied_theta, b.applied_theta);
    assert_eq!(a.y_repeats, b.y_repeats);
    assert_eq!(a.y_std, b.y_std);
    assert_eq!(a.flags, b.flags);
    assert_eq!(a.t_start, b.t_start);
    assert_eq!(a.calibration_id, b.calibration_id);
}

async fn run(url: String, batches: &[Batch]) -> Vec<Result<Measurement, hilt_client::ClientError>> {
    let c = Client::connect(url).await.unwrap();
    let lease = c.acquire("shg0", Duration::from_secs(30)).await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        out.push(lease.execute(b).await);
    }
    out
}

#[tokio::test]
async fn a_recorded_session_is_served_again_bit_for_bit() {
    let rec = tempfile::tempdir().unwrap();
    let dir = rec.path().to_str().unwrap().to_string();
    let mut live = Hiltd::launch(
        Some(RIG),
        &[],
        &["--listen", "127.0.0.1:0", "--record-dir", &dir],
    );
    let sent = batches();
    let recorded: Vec<Measurement> = run(live.url(), &sent)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    // SIGKILL: every answered batch is already in the recording.
    live.kill();

    let replay_config = format!(
        "[[device]]\nid = \"shg0\"\nkind = \"shg\"\nbackend = \"replay\"\nrecording = {dir:?}\n"
    );
    let replay = Hiltd::start(Some(&replay_config));
    let c = Client::connect(replay.url()).await.unwrap();
    let (spec, _) = c.describe("shg0").await.unwrap();
    assert_eq!(spec.backend, hilt_core::Backend::Replay);
    let mut again = sent.clone();
    again.push(sent[0].clone());
    let answers = run(replay.url(), &again).await;
    for (k, (a, want)) in answers.iter().zip(&recorded).enumerate() {
        let a = a.as_ref().unwrap_or_else(|e| panic!("batch {k}: {e}"));
        same(a, want);
    }
    let past = answers[4].as_ref().unwrap_err();
    assert_eq!(past.code(), Some(Code::FailedPrecondition), "{past}");
    assert!(past.to_string().contains("holds 4 batches"), "{past}");
    drop(replay);

    // A request off the recorded path: named, not answered, not counted.
    let replay = Hiltd::start(Some(&replay_config));
    let mut off = sent.clone();
    off[1].x[[1, 4]] += 0.5 / 9.0;
    let answers = run(
        replay.url(),
        &[sent[0].clone(), off[1].clone(), sent[1].clone()],
    )
    .await;
    same(answers[0].as_ref().unwrap(), &recorded[0]);
    let e = answers[1].as_ref().unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("batch 2 diverges from record 2"), "{msg}");
    assert!(msg.contains("x[1, 4]"), "{msg}");
    same(answers[2].as_ref().unwrap(), &recorded[1]);
}
