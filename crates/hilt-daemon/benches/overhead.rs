//! What hiltd adds to a measurement, on one machine, in one run:
//!
//! - `in_process`: validate + `Device::execute` on the loopback device, the
//!   floor any daemon must pay (no network).
//! - `bare_grpc`: a health-check round trip: what gRPC itself costs.
//! - `execute`: `Execute` on the same loopback device through hiltd on
//!   127.0.0.1 (lease check, decode, validate, actor queue, encode).
//!
//! Overhead of the daemon = execute − bare_grpc − in_process.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_core::{Batch, Device, LimitPolicy, validate};
use hilt_daemon::{Config, EmbeddedDaemon};
use hilt_drivers::{DeviceSettings, SimDevice, SimSettings};
use hilt_physics::{LoopbackConfig, LoopbackModel};
use ndarray::Array2;

const CONFIG: &str = r#"
[[device]]
id = "loop"
kind = "loopback"
max_batch = 4096
[device.loopback]
n_in = 64
n_par = 8
"#;

fn batch(rows: usize) -> Batch {
    Batch::shared(
        Array2::from_shape_fn((rows, 64), |(i, j)| (i * 64 + j) as f32),
        &[0.0; 8],
    )
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let daemon = rt
        .block_on(EmbeddedDaemon::start(
            Config::parse(CONFIG, "bench").expect("bench config"),
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("daemon starts");
    let client = rt
        .block_on(hilt_client::Client::connect(daemon.url()))
        .expect("connect");
    let lease = rt
        .block_on(client.acquire("loop", Duration::from_secs(600)))
        .expect("lease");
    let channel = rt
        .block_on(
            tonic::transport::Channel::from_shared(daemon.url())
                .expect("url")
                .connect(),
        )
        .expect("channel");
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut device = SimDevice::new(
        LoopbackModel::new(&LoopbackConfig { n_in: 64, n_par: 8 }).expect("loopback"),
        DeviceSettings {
            id: "loop".into(),
            input_limits: None,
            param_limits: None,
            policy: LimitPolicy::Reject,
            max_batch: 4096,
            max_repeats: 64,
        },
        SimSettings::default(),
    )
    .expect("device");

    for rows in [1usize, 256] {
        let mut g = c.benchmark_group(format!("roundtrip_batch{rows}x64"));
        g.throughput(Throughput::Elements(rows as u64));
        g.measurement_time(Duration::from_secs(4));
        let b = batch(rows);
        g.bench_function("in_process", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let v = validate(device.spec(), b.clone()).expect("valid");
                        black_box(device.execute(&v).await.expect("measured"));
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function("bare_grpc", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut h = health.clone();
                    let t = Instant::now();
                    for _ in 0..iters {
                        let req = tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        };
                        black_box(h.check(req).await.expect("health"));
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function("execute", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(lease.execute(&b).await.expect("measured"));
                    }
                    t.elapsed()
                })
            })
        });
        g.finish();
    }
    rt.block_on(async {
        lease.release().await.expect("release");
        daemon.shutdown().await.expect("clean shutdown");
    });
}

criterion_group!(benches, overhead);
criterion_main!(benches);
