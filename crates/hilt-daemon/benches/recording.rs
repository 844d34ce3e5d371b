//! What recording costs, in one run: four hiltd (recording off, and on
//! with `fsync = never | interval | always`), each serving the 64 × 8
//! loopback device, each with its own directory.
//!
//! - **Round trip**: 256 × 64 `Execute`s, the four daemons taken in turn
//!   (so drift of the machine touches every mode alike), one call every
//!   `PACE` or so. 135 kB a batch at that pace is ~50 MB/s into the
//!   recording, which the page cache and disk absorb as a real rig's data
//!   would: what is timed is what recording adds to one batch, not the
//!   kernel's writeback of the thousand before it. Median, p90 and mean,
//!   and each median over recording off.
//! - **Sustained**: each daemon back to back for `SUSTAIN`: batches per
//!   second and MB/s of applied x, θ and y kept (bound by writeback once
//!   the recording is on).
//!
//! `cargo bench -p hilt-daemon --bench recording`

use std::time::{Duration, Instant};

use hilt_core::Batch;
use hilt_daemon::config::RecordingConfig;
use hilt_daemon::{Config, EmbeddedDaemon};
use hilt_record::Fsync;
use ndarray::Array2;

mod common;
use common::{LOOPBACK_CONFIG as CONFIG, quantile};

const ROUNDS: usize = 2000;
const WARMUP: usize = 200;
const PACE: Duration = Duration::from_millis(2);
const SUSTAIN: Duration = Duration::from_secs(4);
/// Bytes of applied x [256, 64], θ [1, 8] and y [256, 64] as f32.
const BYTES: f64 = ((256 * 64 * 2 + 8) * 4) as f64;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass
    // nothing and must not run for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let modes = [
        ("off", None),
        ("fsync never", Some(Fsync::Never)),
        (
            "fsync interval",
            Some(Fsync::Interval(Duration::from_millis(200))),
        ),
        ("fsync always", Some(Fsync::Always)),
    ];
    let batch = Batch::shared(
        Array2::from_shape_fn((256, 64), |(i, j)| (i * 64 + j) as f32),
        &[0.0; 8],
    );
    rt.block_on(async {
        let mut daemons = Vec::new();
        for (i, (name, fsync)) in modes.iter().enumerate() {
            let mut config = Config::parse(CONFIG, "bench").expect("bench config");
            if let Some(fsync) = fsync {
                let mut r = RecordingConfig::with_dir(dir.path().join(format!("mode{i}")));
                r.options.fsync = *fsync;
                config.recording = Some(r);
            }
            let daemon = EmbeddedDaemon::start(config, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("daemon starts");
            let client = hilt_client::Client::connect(daemon.url())
                .await
                .expect("connect");
            let lease = client
                .acquire("loop", Duration::from_secs(600))
                .await
                .expect("lease");
            daemons.push((*name, daemon, lease));
        }
        let mut times = vec![Vec::with_capacity(ROUNDS); daemons.len()];
        for round in 0..WARMUP + ROUNDS {
            for k in 0..daemons.len() {
                // A different mode goes first each round.
                let m = (round + k) % daemons.len();
                let t = Instant::now();
                daemons[m].2.execute(&batch).await.expect("measured");
                let took = t.elapsed();
                if round >= WARMUP {
                    times[m].push(took);
                }
                tokio::time::sleep(PACE).await;
            }
        }
        println!("round trip, 256 × 64 Execute on loopback, {ROUNDS} per mode, interleaved, one every ~{PACE:?}");
        println!("{:<16} {:>10} {:>10} {:>10} {:>12}", "recording", "median", "p90", "mean", "median/off");
        let mut off = None;
        for (m, t) in times.iter_mut().enumerate() {
            t.sort();
            let med = quantile(t, 0.5);
            let mean = t.iter().sum::<Duration>() / t.len() as u32;
            let base = *off.get_or_insert(med);
            println!(
                "{:<16} {:>8.0}µs {:>8.0}µs {:>8.0}µs {:>11.3}×",
                daemons[m].0,
                med.as_secs_f64() * 1e6,
                quantile(t, 0.9).as_secs_f64() * 1e6,
                mean.as_secs_f64() * 1e6,
                med.as_secs_f64() / base.as_secs_f64()
            );
        }
        println!("\nsustained, back to back for {SUSTAIN:?} each");
        println!("{:<16} {:>12} {:>12}", "recording", "batches/s", "MB/s kept");
        for (name, _, lease) in &daemons {
            let t = Instant::now();
            let mut n = 0u64;
            while t.elapsed() < SUSTAIN {
                lease.execute(&batch).await.expect("measured");
                n += 1;
            }
            let rate = n as f64 / t.elapsed().as_secs_f64();
            let kept = if *name == "off" { 0.0 } else { rate * BYTES / 1e6 };
            println!("{name:<16} {rate:>12.0} {kept:>12.1}");
        }
        for (_, daemon, lease) in daemons {
            lease.release().await.expect("release");
            daemon.shutdown().await.expect("clean shutdown");
        }
    });
}
