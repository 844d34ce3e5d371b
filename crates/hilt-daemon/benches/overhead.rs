//! What hiltd adds to a measurement, on one machine, in one run:
//!
//! - `in_process`: validate + `Device::execute` on the loopback device, the
//!   floor any daemon must pay (no network).
//! - `bare_grpc`: a health-check round trip: what gRPC itself costs.
//! - `execute`: `Execute` on the same loopback device through hiltd on
//!   127.0.0.1 (lease check, decode, validate, actor queue, encode).
//! - `execute_tls_token`: the same through a second hiltd with TLS
//!   (rustls, certificate made here) and a bearer token checked on every
//!   call: what putting hiltd on the lab network costs per round trip.
//!
//! Overhead of the daemon = execute − bare_grpc − in_process.
//!
//! What recording costs: `benches/recording.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_core::{Batch, Device, LimitPolicy, validate};
use hilt_daemon::{Config, EmbeddedDaemon};
use hilt_drivers::{DeviceSettings, SimDevice, SimSettings};
use hilt_physics::{LoopbackConfig, LoopbackModel};
use ndarray::Array2;

mod common;
use common::LOOPBACK_CONFIG as CONFIG;

fn batch(rows: usize) -> Batch {
    Batch::shared(
        Array2::from_shape_fn((rows, 64), |(i, j)| (i * 64 + j) as f32),
        &[0.0; 8],
    )
}

const TOKEN: &str = "hilt_bench_token_0123456789abcdef";

/// A TLS + token hiltd serving `CONFIG`; the directory holds its PEM files.
fn secured(
    rt: &tokio::runtime::Runtime,
) -> (EmbeddedDaemon, hilt_client::Client, tempfile::TempDir) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let text = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n[[server.token]]\nname = \"bench\"\n\
         role = \"operator\"\nsha256 = \"{}\"\n{CONFIG}",
        cert_path.display().to_string(),
        key_path.display().to_string(),
        hex::encode(hilt_core::token::sha256(TOKEN)),
    );
    let daemon = rt
        .block_on(EmbeddedDaemon::start(
            Config::parse(&text, "bench-tls").expect("bench TLS config"),
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("TLS daemon starts");
    let options = hilt_client::ConnectOptions {
        ca_pem: Some(ca.pem().into_bytes()),
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let url = format!("https://localhost:{}", daemon.addr.port());
    let client = rt
        .block_on(hilt_client::Client::connect_with(url, &options))
        .expect("TLS connect");
    (daemon, client, dir)
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
    let (tls_daemon, tls_client, _pem_dir) = secured(&rt);
    let tls_lease = rt
        .block_on(tls_client.acquire("loop", Duration::from_secs(600)))
        .expect("TLS lease");
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
                        black_box(device.execute(v).await.expect("measured"));
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
        g.bench_function("execute_tls_token", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(tls_lease.execute(&b).await.expect("measured"));
                    }
                    t.elapsed()
                })
            })
        });
        g.finish();
    }
    rt.block_on(async {
        lease.release().await.expect("release");
        tls_lease.release().await.expect("release");
        daemon.shutdown().await.expect("clean shutdown");
        tls_daemon.shutdown().await.expect("clean shutdown");
    });
}

criterion_group!(benches, overhead);
criterion_main!(benches);
