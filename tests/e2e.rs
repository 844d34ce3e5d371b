//! hiltd as a real process: discovery, leases, execute, stream, watch,
//! health, reflection, graceful shutdown.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use common::{Hiltd, TEST_CONFIG};
use futures::StreamExt;
use hilt_client::{Client, v1};
use hilt_core::{Batch, DeviceState, EventKind};
use ndarray::Array2;
use tonic::Code;

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn discover_describe_lease_and_execute() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();

    let info = c.server_info().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.devices.len(), 4);

    let ids: Vec<String> = c
        .list_devices()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["loop", "shg-clamp", "shg-slow", "shg0"]);

    let (spec, status) = c.describe("shg0").await.unwrap();
    assert_eq!(
        (spec.kind.as_str(), spec.n_in, spec.n_par, spec.n_out),
        ("shg", 12, 40, 7)
    );
    assert_eq!(spec.model, "true");
    let enc = spec.encoding.as_ref().expect("SHG publishes its encoding");
    assert_eq!(enc.layout, "interleaved");
    assert_eq!(enc.input_index.len(), 64);
    assert_eq!(status.state, DeviceState::Ready);

    let lease = c.acquire("shg0", TTL).await.unwrap();
    let x = Array2::from_shape_fn((5, 12), |(i, j)| ((i + j) % 7) as f32 / 6.0);
    let theta = Array2::from_elem((1, 40), 0.5f32);
    let m = lease
        .execute(&Batch {
            x: x.clone(),
            theta,
            repeats: 3,
            return_repeats: true,
        })
        .await
        .unwrap();
    assert_eq!(m.y.dim(), (5, 7));
    assert_eq!(m.y_repeats.as_ref().unwrap().dim(), (3, 5, 7));
    assert_eq!(m.y_std.as_ref().unwrap().dim(), (5, 7));
    assert_eq!(m.applied_x.dim(), (5, 12));
    assert_eq!(m.applied_theta.dim(), (1, 40));
    // applied = quantised onto the 6-bit mask grid, within half a step
    for (a, r) in m.applied_x.iter().zip(&x) {
        assert!((a - r).abs() <= 0.5 / 63.0 + 1e-6);
        assert!((a * 63.0 - (a * 63.0).round()).abs() < 1e-4);
    }
    assert_eq!(m.flags.len(), 5);
    assert!(
        m.t_start.windows(2).all(|w| w[1] > w[0]),
        "rows measured in order"
    );
    assert_eq!(m.calibration_id, spec.calibration_id);
    assert!(m.y.iter().all(|v| v.is_finite() && *v > -0.01));

    // The same call on the same seed and state is reproducible across
    // daemons: a fresh daemon gives bit-identical results.
    drop(lease);
    let d2 = Hiltd::start(Some(TEST_CONFIG));
    let c2 = Client::connect(d2.url()).await.unwrap();
    let l2 = c2.acquire("shg0", TTL).await.unwrap();
    let m2 = l2
        .execute(&Batch {
            x,
            theta: Array2::from_elem((1, 40), 0.5f32),
            repeats: 3,
            return_repeats: true,
        })
        .await
        .unwrap();
    assert_eq!(m.y, m2.y, "same seed, same first batch => same measurement");
}

#[tokio::test]
async fn stream_1000_batches_in_order_within_the_window() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("loop", TTL).await.unwrap();
    let (mut tx, mut rx) = lease.stream(8).await.unwrap().into_split();
    let n = 1000u64;
    let sender = tokio::spawn(async move {
        for k in 0..n {
            // each batch carries its own number in every cell
            let x =
                Array2::from_shape_fn((3, 4), |(i, j)| (k * 100 + i as u64 * 4 + j as u64) as f32);
            let seq = tx.send(&Batch::shared(x, &[0.0])).await.unwrap();
            assert_eq!(seq, k);
        }
        // dropping tx closes our side; the daemon answers what is queued
    });
    for k in 0..n {
        let (seq, m) = rx.recv().await.expect("an answer per batch").unwrap();
        assert_eq!(seq, k, "answers come in sequence order");
        let m = m.unwrap();
        let expect =
            Array2::from_shape_fn((3, 4), |(i, j)| (k * 100 + i as u64 * 4 + j as u64) as f32);
        assert_eq!(m.y, expect, "batch {k} answered with its own data");
    }
    sender.await.unwrap();
    assert!(
        rx.recv().await.is_none(),
        "stream ends after the last answer"
    );
    let (_, status) = c.describe("loop").await.unwrap();
    assert_eq!(status.batches_done, n);
}

#[tokio::test]
async fn stream_reports_bad_batches_in_band_and_keeps_going() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("loop", TTL).await.unwrap();
    let (mut tx, mut rx) = lease.stream(4).await.unwrap().into_split();
    tx.send(&Batch::shared(Array2::zeros((2, 4)), &[0.0]))
        .await
        .unwrap();
    tx.send(&Batch::shared(Array2::zeros((2, 3)), &[0.0]))
        .await
        .unwrap(); // wrong n_in
    tx.send(&Batch::shared(Array2::ones((1, 4)), &[0.0]))
        .await
        .unwrap();
    drop(tx);
    let (s0, r0) = rx.recv().await.unwrap().unwrap();
    let (s1, r1) = rx.recv().await.unwrap().unwrap();
    let (s2, r2) = rx.recv().await.unwrap().unwrap();
    assert_eq!((s0, s1, s2), (0, 1, 2));
    assert!(r0.is_ok() && r2.is_ok());
    let e = r1.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    assert!(e.to_string().contains("batch.x"), "{e}");
}

#[tokio::test]
async fn stream_without_a_lease_is_refused() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(v1::StreamRequest {
        kind: Some(v1::stream_request::Kind::Open(v1::StreamOpen {
            device_id: "loop".into(),
            lease_id: String::new(),
            window: 4,
        })),
    })
    .await
    .unwrap();
    let err = c
        .raw()
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
}

#[tokio::test]
async fn watch_starts_with_a_snapshot_then_reports_changes() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let mut events = c.watch("loop").await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.kind, EventKind::Snapshot);
    assert!(!first.status.leased);
    let lease = c.acquire("loop", TTL).await.unwrap();
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(e.kind, EventKind::LeaseChanged);
    assert!(e.status.leased);
    lease
        .execute(&Batch::shared(Array2::zeros((1, 4)), &[0.0]))
        .await
        .unwrap();
    let busy = events.next().await.unwrap().unwrap();
    assert_eq!(busy.status.state, DeviceState::Busy);
    let ready = events.next().await.unwrap().unwrap();
    let s = ready.status;
    assert_eq!((s.state, s.batches_done), (DeviceState::Ready, 1));
}

#[tokio::test]
async fn health_reports_serving() {
    let d = Hiltd::start(None);
    let ch = tonic::transport::Channel::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    for service in ["", "hilt.v1.Hilt"] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_then_exits_zero() {
    let mut d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let mut events = c.watch("shg-slow").await.unwrap();
    events.next().await.unwrap().unwrap(); // snapshot
    let lease = c.acquire("shg-slow", TTL).await.unwrap();
    // 200 samples x 2 ms: long enough to be surely in flight at SIGTERM
    let batch = Batch::shared(Array2::from_elem((200, 12), 0.5f32), &[0.5; 40]);
    let call = tokio::spawn(async move { lease.execute(&batch).await });
    // wait until the device reports Busy: the batch is on the rig
    loop {
        let e = events.next().await.unwrap().unwrap();
        if e.status.state == DeviceState::Busy {
            break;
        }
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = d.terminate();
        (s, d.log())
    });
    let m = call.await.unwrap().expect("the batch in flight completes");
    assert_eq!(m.y.nrows(), 200);
    let (status, log) = status.await.unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[tokio::test]
async fn a_batch_wider_than_four_mebibytes_is_accepted() {
    // A full batch of a wide device (a ten-copy plate readout carries
    // 2 156 floats a row) is larger than tonic's default 4 MiB limit.
    let config = r#"
[[device]]
id = "wide"
kind = "loopback"
max_batch = 1024
[device.loopback]
n_in = 1200
n_par = 1200
"#;
    let d = Hiltd::start(Some(config));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("wide", TTL).await.unwrap();
    let x = Array2::from_shape_fn((1024, 1200), |(i, j)| ((i * 7 + j) % 11) as f32 / 10.0);
    let theta = Array2::from_elem((1024, 1200), 0.25f32);
    let m = lease
        .execute(&Batch {
            x: x.clone(),
            theta,
            repeats: 1,
            return_repeats: false,
        })
        .await
        .expect("a 9.8 MB request and its answer pass");
    assert_eq!(m.applied_x, x);
}

#[tokio::test]
async fn an_idle_connection_cannot_hold_shutdown_and_watches_end_unavailable() {
    let config = r#"
[server]
shutdown_grace_s = 0.5

[[device]]
id = "loop"
kind = "loopback"
[device.loopback]
n_in = 2
"#;
    let mut d = Hiltd::start(Some(config));
    // A peer that connects and says nothing, ever.
    let idle = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let c = Client::connect(d.url()).await.unwrap();
    let mut events = c.watch("loop").await.unwrap();
    events.next().await.unwrap().unwrap(); // snapshot
    let t0 = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = d.terminate();
        (s, d.log())
    });
    let end = events.next().await.expect("the watch ends with a status");
    let err = end.expect_err("not OK: the client must not take it for done");
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    let (status, log) = status.await.unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    // Bounded by the grace (0.5 s), not by the idle peer.
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(log.contains("after the shutdown grace"), "{log}");
    drop(idle);
}

#[tokio::test]
async fn each_device_has_its_own_health() {
    let config = r#"
[[device]]
id = "loop"
kind = "loopback"
[device.loopback]
n_in = 2

[[device]]
id = "unplugged"
kind = "shg"
backend = "serial"
[device.serial]
port = "/nonexistent/hilt-board"
"#;
    let d = Hiltd::start(Some(config));
    let ch = tonic::transport::Channel::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut check = async |service: &str| {
        h.check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
    };
    assert_eq!(check("").await, ServingStatus::Serving as i32);
    assert_eq!(check("loop").await, ServingStatus::Serving as i32);
    assert_eq!(check("unplugged").await, ServingStatus::NotServing as i32);
}
