//! Two or more clients contending for one rig: FIFO hand-over, batches
//! never interleaved on the device, and a holder that dies frees the
//! device after its TTL.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Hiltd, TEST_CONFIG};
use futures::StreamExt;
use hilt_client::{Client, v1};
use hilt_core::{Batch, Measurement};
use ndarray::Array2;
use tonic::Code;

const TTL: Duration = Duration::from_secs(30);
/// Virtual seconds per SHG shot (physics default exposure).
const EXPOSURE: f64 = 0.005;

fn shg_batch(rows: usize) -> Batch {
    Batch::shared(Array2::from_elem((rows, 12), 0.5f32), &[0.5; 40])
}

/// Rows of one batch were measured back to back: no other shot between.
fn assert_contiguous(m: &Measurement) {
    for w in m.t_start.windows(2) {
        assert!(
            (w[1] - w[0] - EXPOSURE).abs() < 1e-9,
            "a foreign shot inside a batch: {w:?}"
        );
    }
}

/// Wait until the device reports `n` lease waiters.
async fn until_waiters(
    events: &mut (
             impl futures::Stream<Item = Result<hilt_core::DeviceEvent, hilt_client::ClientError>>
             + Unpin
         ),
    n: u32,
) {
    loop {
        let e = events.next().await.expect("watch open").expect("event");
        if e.status.waiters == n {
            return;
        }
    }
}

#[tokio::test]
async fn waiters_get_the_device_in_fifo_order() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let url = d.url();
    let c = Client::connect(&url).await.unwrap();
    let mut events = c.watch("shg-slow").await.unwrap();
    let a = c.acquire("shg-slow", TTL).await.unwrap();

    let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for name in ["B", "C", "D"] {
        let url = url.clone();
        let tx = tx.clone();
        clients.push(tokio::spawn(async move {
            // each waiter on its own connection, as separate trainers would be
            let c = Client::connect(url).await.unwrap();
            let lease = c.acquire("shg-slow", TTL).await.unwrap();
            let m = lease.execute(&shg_batch(10)).await.unwrap();
            tx.send((name, m)).unwrap();
            lease.release().await.unwrap();
        }));
        let queued = clients.len() as u32;
        until_waiters(&mut events, queued).await;
    }
    let held = a.execute(&shg_batch(10)).await.unwrap();
    a.release().await.unwrap();
    let mut names = Vec::new();
    let mut batches = vec![held];
    for _ in 0..3 {
        let (n, m) = order.recv().await.unwrap();
        names.push(n);
        batches.push(m);
    }
    assert_eq!(names, ["B", "C", "D"]);
    for m in &batches {
        assert_contiguous(m);
    }
    // and in device time each holder's batch comes after the previous one
    for w in batches.windows(2) {
        assert!(
            w[1].t_start[0] >= w[0].t_end[9],
            "batches overlap on the device"
        );
    }
    for c in clients {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_batches_on_one_lease_are_never_interleaved() {
    // Two tasks share one lease (as a trainer with parallel layers might);
    // the device actor must still run each batch whole.
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = std::sync::Arc::new(c.acquire("shg-slow", TTL).await.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let lease = std::sync::Arc::clone(&lease);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(lease.execute(&shg_batch(25)).await.unwrap());
            }
            out
        }));
    }
    let mut all: Vec<Measurement> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 12);
    for m in &all {
        assert_contiguous(m);
    }
    all.sort_by(|a, b| a.t_start[0].total_cmp(&b.t_start[0]));
    for w in all.windows(2) {
        assert!(
            w[1].t_start[0] >= w[0].t_end[24] - 1e-9,
            "two batches overlap on the device"
        );
    }
}

/// Not a test: the body of the holder process spawned below. It acquires a
/// lease (keepalive running) and prints its id, then waits to be killed.
#[tokio::test]
#[ignore = "helper process for holder_killed_frees_the_device_after_its_ttl"]
async fn helper_lease_holder_process() {
    let url = std::env::var("HILT_TEST_HOLDER_URL").expect("run by the lease test only");
    let c = Client::connect(url).await.unwrap();
    let lease = c.acquire("loop", Duration::from_secs(1)).await.unwrap();
    println!("LEASE {}", lease.id());
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn holder_killed_frees_the_device_after_its_ttl() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "leases::helper_lease_holder_process",
            "--nocapture",
        ])
        .env("HILT_TEST_HOLDER_URL", d.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let held = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "holder died before leasing"
        );
        if let Some(id) = line.trim().strip_prefix("LEASE ") {
            break id.to_string();
        }
    };
    let mut raw = c.raw();
    let ask = |wait: f64| v1::AcquireLeaseRequest {
        device_id: "loop".into(),
        ttl_seconds: 30.0,
        wait_seconds: wait,
    };

    // Alive, its keepalive holds the 1 s lease well past its TTL: a waiter
    // gives up after 2.5 TTLs (the daemon's timer) without the device.
    let e = raw.acquire_lease(ask(2.5)).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");

    holder.kill().unwrap();
    holder.wait().unwrap();
    // Dead, it stops renewing; the next waiter is served once the TTL runs out.
    let granted = raw.acquire_lease(ask(0.0)).await.unwrap().into_inner();
    assert_ne!(granted.lease_id, held);
    let probe = v1::ExecuteRequest {
        device_id: "loop".into(),
        lease_id: held,
        batch: None,
    };
    let e = raw.execute(probe).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("expired"),
        "freed by expiry, not release: {}",
        e.message()
    );
}
