//! The real-instrument path end to end, in real processes: hiltd with
//! `backend = "serial"` drives firmware-sim boards on pseudo-terminals
//! through the same serial stack it uses in the lab.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Hiltd;
use futures::StreamExt;
use hilt_client::{Client, ClientError, Lease};
use hilt_core::{Batch, Measurement};
use hilt_core::{DeviceEvent, DeviceState, DeviceStatus};
use hilt_physics::shg::{ShgConfig, ShgModel};
use hilt_physics::{PhysicalModel, Variant};
use ndarray::Array2;
use tokio::sync::mpsc;
use tonic::Code;

const TTL: Duration = Duration::from_secs(60);
/// Only to turn a hang into a failure; nothing is timed against it.
const PATIENCE: Duration = Duration::from_secs(60);

/// firmware-sim is another package's binary: `cargo test --workspace`
/// builds it next to hiltd.
fn firmware_sim() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_hiltd")).with_file_name("firmware-sim");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p \
         firmware-sim` first)",
        p.display()
    );
    p
}

/// A firmware-sim process; every `PTY` line it prints (one per plug-in)
/// arrives with the instant it was read.
struct Board {
    child: Child,
    plugs: mpsc::UnboundedReceiver<Instant>,
}

impl Board {
    fn start(link: &Path, args: &[&str]) -> Board {
        let mut child = Command::new(firmware_sim())
            .arg("--link")
            .arg(link)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, plugs) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                assert!(line.starts_with("PTY /"), "{line:?}");
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        Board { child, plugs }
    }

    async fn plugged_in(&mut self) -> Instant {
        tokio::time::timeout(PATIENCE, self.plugs.recv())
            .await
            .expect("firmware-sim announces its PTY")
            .expect("firmware-sim is running")
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A serial device whose host model is `model` (the variant the board
/// runs: its actuator grid); no seed, which is the board's own.
fn serial_device(id: &str, kind: &str, port: &Path, model: &str, extra: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nkind = \"{kind}\"\nbackend = \"serial\"\n\
         model = \"{model}\"\n[device.serial]\nport = \"{}\"\n{extra}\n",
        port.display()
    )
}

/// Watch `device` until it is in `state`; returns when that was seen.
async fn until(
    events: &mut (impl futures::Stream<Item = Result<DeviceEvent, ClientError>> + Unpin),
    state: DeviceState,
) -> (Instant, DeviceStatus) {
    loop {
        let e = tokio::time::timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {state:?} within {PATIENCE:?}"))
            .unwrap()
            .unwrap();
        let s = e.status;
        if s.state == state {
            return (Instant::now(), s);
        }
    }
}

/// Off-grid values over the actuator range, deterministic per `salt`.
fn values(rows: usize, cols: usize, salt: u64) -> Array2<f32> {
    let mut s = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 100_000) as f32 / 100_000.0
    })
}

async fn ready(c: &Client, id: &str) -> DeviceStatus {
    let mut events = c.watch(id).await.unwrap();
    until(&mut events, DeviceState::Ready).await.1
}

fn assert_same(a: &Measurement, b: &Measurement) {
    assert_eq!(a.y, b.y);
    assert_eq!(a.y_repeats, b.y_repeats);
    assert_eq!(a.y_std, b.y_std);
    assert_eq!(a.applied_x, b.applied_x);
    assert_eq!(a.applied_theta, b.applied_theta);
    assert_eq!(a.flags, b.flags);
    assert_eq!(a.t_start, b.t_start);
    assert_eq!(a.t_end, b.t_end);
}

#[tokio::test]
async fn serial_measurements_equal_the_in_process_simulator_with_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (shg_port, plate_port) = (dir.path().join("shg"), dir.path().join("plate"));
    let mut shg_board = Board::start(&shg_port, &["--rig", "shg", "--seed", "7"]);
    let mut plate_board = Board::start(&plate_port, &["--rig", "plate", "--seed", "3"]);
    shg_board.plugged_in().await;
    plate_board.plugged_in().await;
    // Non-default physics on both sides: the host configures the board
    // with its whole physics table.
    let plate_physics = "[device.plate]\nn_bins = 6\nq = 40.0\n";
    let config = [
        serial_device("shg-serial", "shg", &shg_port, "true", ""),
        "[[device]]\nid = \"shg-sim\"\nkind = \"shg\"\nseed = 7\n".to_string(),
        serial_device("plate-serial", "plate", &plate_port, "true", plate_physics),
        format!("[[device]]\nid = \"plate-sim\"\nkind = \"plate\"\nseed = 3\n{plate_physics}"),
    ]
    .concat();
    let d = Hiltd::start(Some(&config));
    let c = Client::connect(d.url()).await.unwrap();
    let status = ready(&c, "shg-serial").await;
    assert!(status.detail.contains("FWSIM-shg"), "{}", status.detail);
    ready(&c, "plate-serial").await;

    let (spec, _) = c.describe("shg-serial").await.unwrap();
    assert_eq!(spec.backend, hilt_core::Backend::Serial);
    // Who measures is the board's to say, not a simulator's.
    assert!(
        spec.firmware.serial_number.starts_with("FWSIM-shg-"),
        "{:?}",
        spec.firmware
    );
    assert_eq!(spec.calibration_id, status.calibration_id);
    assert!(spec.calibration_id.starts_with("serial-shg-FWSIM-shg-"));
    assert_eq!((spec.model.as_str(), spec.seed), ("", 0));
    assert!(!spec.hyperparameters.contains_key("variant"));
    let info = c.server_info().await.unwrap();
    let (_, fw) = info
        .devices
        .iter()
        .find(|(id, _)| id == "shg-serial")
        .unwrap();
    assert_eq!(fw, &spec.firmware);
    for (serial, sim, batches) in [
        ("shg-serial", "shg-sim", 4),
        ("plate-serial", "plate-sim", 2),
    ] {
        let (spec, _) = c.describe(sim).await.unwrap();
        let (a, b) = (
            c.acquire(serial, TTL).await.unwrap(),
            c.acquire(sim, TTL).await.unwrap(),
        );
        for k in 0..batches {
            let batch = Batch {
                x: values(5, spec.n_in, k),
                theta: values(if k % 2 == 0 { 1 } else { 5 }, spec.n_par, 100 + k),
                repeats: 3,
                return_repeats: true,
            };
            let (ma, mb) = (
                a.execute(&batch).await.unwrap(),
                b.execute(&batch).await.unwrap(),
            );
            assert_same(&ma, &mb);
            assert!(
                ma.calibration_id
                    .starts_with(&format!("serial-{}-FWSIM-", spec.kind))
            );
        }
    }
}

/// What counting a fault run found.
#[derive(Debug, Default)]
struct Tally {
    correct: u64,
    retryable: u64,
}

/// One execute of fresh random values; false if it got a retryable error.
async fn one_execute(lease: &Lease, model: &mut ShgModel, k: u64, tally: &mut Tally) -> bool {
    let x = values(1, model.n_in(), k);
    let theta = values(1, model.n_par(), k + 1_000_000);
    let batch = Batch::shared(x.clone(), theta.row(0).as_slice().unwrap());
    match lease.execute(&batch).await {
        Ok(m) => {
            // What the board should have played, and measured: the
            // nominal model is deterministic.
            let (mut ax, mut at) = (x.clone(), theta.clone());
            model.quantize(ax.as_slice_mut().unwrap(), at.as_slice_mut().unwrap());
            assert_eq!(m.applied_x, ax, "execute {k}: applied inputs");
            assert_eq!(m.applied_theta, at, "execute {k}: applied parameters");
            let mut y = vec![0.0; model.n_out()];
            model.shot(ax.as_slice().unwrap(), at.as_slice().unwrap(), &mut y);
            assert_eq!(
                m.y.as_slice().unwrap(),
                &y[..],
                "execute {k}: a wrong measurement"
            );
            tally.correct += 1;
            true
        }
        Err(e) => {
            assert!(
                matches!(e.code(), Some(Code::Unavailable | Code::Aborted)),
                "execute {k}: {e}"
            );
            tally.retryable += 1;
            false
        }
    }
}

#[tokio::test]
async fn ten_thousand_executes_at_one_percent_faults_of_each_kind_are_never_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("shg");
    let faults = [
        "--corrupt-rate",
        "0.01",
        "--drop-rate",
        "0.01",
        "--dup-rate",
        "0.01",
        "--stall-rate",
        "0.01",
        "--stall-ms",
        "80",
    ];
    let mut args = vec!["--rig", "shg", "--seed", "5", "--model", "nominal"];
    args.extend(faults);
    let mut board = Board::start(&port, &args);
    board.plugged_in().await;
    let timing = "timeout_ms = 40\nquiet_ms = 10\n";
    let d = Hiltd::start(Some(&serial_device("shg", "shg", &port, "nominal", timing)));
    let c = Client::connect(d.url()).await.unwrap();
    ready(&c, "shg").await;
    let lease = c.acquire("shg", TTL).await.unwrap();
    let mut model = ShgModel::new(ShgConfig::default(), Variant::Nominal, 5).unwrap();
    let mut tally = Tally::default();
    let t0 = Instant::now();
    for k in 0..10_000 {
        // While the driver reconnects it answers at once: wait for it
        // rather than spin through the run.
        if !one_execute(&lease, &mut model, k, &mut tally).await {
            let (_, st) = c.describe("shg").await.unwrap();
            if st.state != DeviceState::Ready {
                ready(&c, "shg").await;
            }
        }
    }
    eprintln!(
        "fault run: 10000 executes in {:.1} s: {} correct, {} retryable errors, 0 wrong",
        t0.elapsed().as_secs_f64(),
        tally.correct,
        tally.retryable
    );
    assert_eq!(tally.correct + tally.retryable, 10_000);
    assert!(tally.correct > 5_000, "{tally:?}");
    assert!(tally.retryable > 0, "faults were injected: {tally:?}");
}

#[tokio::test]
async fn replugged_board_recovers_without_restarting_hiltd_and_watchers_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("shg");
    let mut board = Board::start(
        &port,
        &[
            "--rig",
            "shg",
            "--unplug-every",
            "40",
            "--replug-after-ms",
            "100",
        ],
    );
    board.plugged_in().await;
    let timing = "reconnect_min_ms = 10\nreconnect_max_ms = 200\n";
    let d = Hiltd::start(Some(&serial_device("shg", "shg", &port, "true", timing)));
    let c = Client::connect(d.url()).await.unwrap();
    ready(&c, "shg").await;
    let mut events = c.watch("shg").await.unwrap();
    let lease = c.acquire("shg", TTL).await.unwrap();

    // Batches keep coming while the board is unplugged and replugged.
    let worker = tokio::spawn(async move {
        let mut tally = Tally::default();
        for k in 0.. {
            let batch = Batch::shared(values(4, 12, k), &[0.5; 40]);
            match lease.execute(&batch).await {
                Ok(_) => tally.correct += 1,
                Err(e) if e.code() == Some(Code::Unavailable) => {
                    tally.retryable += 1;
                    // Not ready: come back a little later instead of spinning.
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
            if tally.correct >= 10_000 {
                break;
            }
        }
        tally
    });
    let mut recovery = Vec::new();
    for _ in 0..20 {
        until(&mut events, DeviceState::Reconnecting).await;
        let plugged = board.plugged_in().await;
        let (ready_at, st) = until(&mut events, DeviceState::Ready).await;
        assert!(st.detail.contains("FWSIM-shg"), "{}", st.detail);
        recovery.push(ready_at.saturating_duration_since(plugged));
    }
    worker.abort();
    recovery.sort();
    eprintln!(
        "replug recovery over {} replugs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        recovery.len(),
        recovery[recovery.len() / 2].as_secs_f64() * 1e3,
        recovery[0].as_secs_f64() * 1e3,
        recovery[recovery.len() - 1].as_secs_f64() * 1e3,
    );
    let (_, st) = c.describe("shg").await.unwrap();
    assert!(st.batches_done > 0);
}

#[tokio::test]
async fn a_board_that_never_answers_is_unavailable_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("shg");
    let mut board = Board::start(&port, &["--rig", "shg", "--drop-rate", "1"]);
    board.plugged_in().await;
    let timing = "timeout_ms = 100\nattempts = 2\n";
    let d = Hiltd::start(Some(&serial_device("shg", "shg", &port, "true", timing)));
    let c = Client::connect(d.url()).await.unwrap();
    let mut events = c.watch("shg").await.unwrap();
    let (_, st) = until(&mut events, DeviceState::Faulted).await;
    assert!(st.detail.contains("no reply"), "{}", st.detail);
    let lease = c.acquire("shg", TTL).await.unwrap();
    let batch = Batch::shared(Array2::from_elem((2, 12), 0.5), &[0.5; 40]);
    let t0 = Instant::now();
    let err = tokio::time::timeout(PATIENCE, lease.execute(&batch))
        .await
        .expect("an answer, not a hang")
        .unwrap_err();
    eprintln!("silent board: UNAVAILABLE after {:?}: {err}", t0.elapsed());
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert!(err.to_string().contains("no reply"), "{err}");
}
