//! Bad input, table-driven: every case gets the right gRPC code and a
//! message naming the field (and index), and the device never sees it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use common::{Hiltd, TEST_CONFIG};
use futures::StreamExt;
use hilt_client::{Client, v1};
use tonic::Code;

fn tensor(shape: &[u32], vals: &[f32]) -> v1::Tensor {
    v1::Tensor {
        shape: shape.to_vec(),
        data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn filled(rows: u32, cols: u32, v: f32) -> v1::Tensor {
    tensor(&[rows, cols], &vec![v; (rows * cols) as usize])
}

/// A valid 3-row request for shg0 (12 inputs, 40 parameters).
fn good(lease: &str) -> v1::ExecuteRequest {
    v1::ExecuteRequest {
        device_id: "shg0".into(),
        lease_id: lease.into(),
        batch: Some(v1::Batch {
            x: Some(filled(3, 12, 0.5)),
            theta: Some(filled(1, 40, 0.5)),
            repeats: 1,
            return_repeats: false,
        }),
    }
}

fn with_batch(lease: &str, f: impl FnOnce(&mut v1::Batch)) -> v1::ExecuteRequest {
    let mut r = good(lease);
    f(r.batch.as_mut().expect("good() has a batch"));
    r
}

fn set(t: &mut Option<v1::Tensor>, idx: usize, v: f32) {
    let t = t.as_mut().expect("tensor present");
    let mut data = t.data.to_vec();
    data[idx * 4..idx * 4 + 4].copy_from_slice(&v.to_le_bytes());
    t.data = data.into();
}

#[tokio::test]
async fn every_bad_request_is_refused_with_a_specific_error_before_the_device() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let mut raw = c.raw();
    let lease = c.acquire("shg0", Duration::from_secs(30)).await.unwrap();
    let other = c.acquire("loop", Duration::from_secs(30)).await.unwrap();
    let l = lease.id().to_string();

    // A lease that was released, and one that expired (no keepalive on a
    // raw lease; we wait for the daemon to announce the expiry).
    let released = c
        .acquire("shg-clamp", Duration::from_secs(30))
        .await
        .unwrap();
    let released_id = released.id().to_string();
    released.release().await.unwrap();
    let mut watch = c.watch("shg-slow").await.unwrap();
    watch.next().await.unwrap().unwrap();
    let expired = raw
        .acquire_lease(v1::AcquireLeaseRequest {
            device_id: "shg-slow".into(),
            ttl_seconds: 0.05,
            wait_seconds: 0.0,
        })
        .await
        .unwrap()
        .into_inner()
        .lease_id;
    loop {
        let e = watch.next().await.unwrap().unwrap();
        if e.kind == hilt_core::EventKind::LeaseChanged && !e.status.leased {
            break;
        }
    }

    let cases: Vec<(&str, v1::ExecuteRequest, Code, &str)> = vec![
        (
            "x columns",
            with_batch(&l, |b| b.x = Some(filled(3, 11, 0.5))),
            Code::InvalidArgument,
            "batch.x: expected shape [B, 12], got [3, 11]",
        ),
        (
            "theta rows neither 1 nor B",
            with_batch(&l, |b| b.theta = Some(filled(2, 40, 0.5))),
            Code::InvalidArgument,
            "batch.theta: expected 1 or 3 rows",
        ),
        (
            "theta columns",
            with_batch(&l, |b| b.theta = Some(filled(1, 39, 0.5))),
            Code::InvalidArgument,
            "batch.theta: expected shape [1, 40], got [1, 39]",
        ),
        (
            "NaN input",
            with_batch(&l, |b| set(&mut b.x, 12 + 3, f32::NAN)),
            Code::InvalidArgument,
            "batch.x[1, 3]: NaN is not a finite number",
        ),
        (
            "Inf parameter",
            with_batch(&l, |b| set(&mut b.theta, 7, f32::INFINITY)),
            Code::InvalidArgument,
            "batch.theta[0, 7]: inf is not a finite number",
        ),
        (
            "input above limit",
            with_batch(&l, |b| set(&mut b.x, 2 * 12 + 5, 1.5)),
            Code::OutOfRange,
            "batch.x[2, 5] = 1.5 is outside the hard limit [0, 1]",
        ),
        (
            "parameter below limit",
            with_batch(&l, |b| set(&mut b.theta, 0, -0.25)),
            Code::OutOfRange,
            "batch.theta[0, 0] = -0.25 is outside the hard limit [0, 1]",
        ),
        (
            "empty batch",
            with_batch(&l, |b| b.x = Some(filled(0, 12, 0.5))),
            Code::InvalidArgument,
            "batch.x: empty batch (0 rows)",
        ),
        (
            "batch above maximum",
            with_batch(&l, |b| b.x = Some(filled(65, 12, 0.5))),
            Code::ResourceExhausted,
            "batch.x: 65 rows exceed the device maximum of 64",
        ),
        (
            "zero repeats",
            with_batch(&l, |b| b.repeats = 0),
            Code::InvalidArgument,
            "batch.repeats: must be at least 1",
        ),
        (
            "absurd repeats",
            with_batch(&l, |b| b.repeats = 4_000_000_000),
            Code::ResourceExhausted,
            "batch.repeats: 4000000000 exceeds the device maximum of 8",
        ),
        (
            "unknown device",
            v1::ExecuteRequest {
                device_id: "shg9".into(),
                ..good(&l)
            },
            Code::NotFound,
            "device_id: unknown device 'shg9'",
        ),
        (
            "no device",
            v1::ExecuteRequest {
                device_id: String::new(),
                ..good(&l)
            },
            Code::InvalidArgument,
            "device_id: required",
        ),
        (
            "missing lease",
            good(""),
            Code::FailedPrecondition,
            "lease_id: missing: acquire a lease of device 'shg0' first",
        ),
        (
            "made-up lease",
            good("0123abcd"),
            Code::FailedPrecondition,
            "lease_id: '0123abcd' is not a lease of device 'shg0'",
        ),
        (
            "foreign lease",
            good(other.id()),
            Code::FailedPrecondition,
            "is for device 'loop', not 'shg0'",
        ),
        (
            "released lease",
            v1::ExecuteRequest {
                device_id: "shg-clamp".into(),
                ..good(&released_id)
            },
            Code::FailedPrecondition,
            "was released",
        ),
        (
            "expired lease",
            v1::ExecuteRequest {
                device_id: "shg-slow".into(),
                ..good(&expired)
            },
            Code::FailedPrecondition,
            "expired",
        ),
        (
            "bytes not whole f32s",
            with_batch(&l, |b| {
                let x = b.x.as_mut().unwrap();
                x.data.truncate(x.data.len() - 1);
            }),
            Code::InvalidArgument,
            "batch.x: 143 data bytes are not a whole number of 4-byte f32",
        ),
        (
            "bytes do not match shape",
            with_batch(&l, |b| b.x = Some(tensor(&[3, 12], &[0.5; 35]))),
            Code::InvalidArgument,
            "batch.x: shape [3, 12] needs 144 bytes (36 little-endian f32), got 140",
        ),
        (
            "rank-1 tensor",
            with_batch(&l, |b| b.theta = Some(tensor(&[40], &[0.5; 40]))),
            Code::InvalidArgument,
            "batch.theta: expected a rank-2 tensor",
        ),
        (
            "no batch",
            v1::ExecuteRequest {
                batch: None,
                ..good(&l)
            },
            Code::InvalidArgument,
            "batch: missing",
        ),
        (
            "no x",
            with_batch(&l, |b| b.x = None),
            Code::InvalidArgument,
            "batch.x: missing",
        ),
    ];

    let mut failures = Vec::new();
    for (name, req, code, text) in cases {
        match raw.execute(req).await {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(s) if s.code() != code || !s.message().contains(text) => failures.push(format!(
                "{name}: got {:?} {:?}, want {code:?} containing {text:?}",
                s.code(),
                s.message()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Nothing reached a device; then a good batch does.
    for dev in ["shg0", "shg-clamp", "shg-slow"] {
        assert_eq!(
            c.describe(dev).await.unwrap().1.samples_done,
            0,
            "{dev} saw bad input"
        );
    }
    raw.execute(good(&l)).await.unwrap();
    assert_eq!(c.describe("shg0").await.unwrap().1.samples_done, 3);
}

#[tokio::test]
async fn clamp_policy_clamps_flags_the_row_and_reports_applied_values() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c
        .acquire("shg-clamp", Duration::from_secs(30))
        .await
        .unwrap();
    let mut x = ndarray::Array2::from_elem((3, 12), 0.5f32);
    x[[1, 4]] = 1.7;
    let m = lease
        .execute(&hilt_core::Batch::shared(x, &[0.5; 40]))
        .await
        .unwrap();
    let clamped: Vec<bool> = m.flags.iter().map(|f| f.clamped).collect();
    assert_eq!(clamped, [false, true, false]);
    assert_eq!(m.applied_x[[1, 4]], 1.0);
    // parameters above the 0.9 limit: every row shares them, every row flagged,
    // and grid rounding never lands above the limit
    let m = lease
        .execute(&hilt_core::Batch::shared(
            ndarray::Array2::from_elem((2, 12), 0.5f32),
            &[0.95; 40],
        ))
        .await
        .unwrap();
    assert!(m.flags.iter().all(|f| f.clamped));
    assert!(
        m.applied_theta.iter().all(|&v| v <= 0.9),
        "{}",
        m.applied_theta
    );
}

/// A config that cannot be served is refused before the ready line: a
/// supervisor waiting for `hiltd listening on` must never see it for a
/// daemon about to exit.
#[test]
fn invalid_devices_are_refused_before_hiltd_says_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    for (device, want) in [
        ("[device.limits]\ninput = [1.0, 0.0]\n", "limits.input"),
        ("max_batch = 1099511627776\n", "max_batch"),
        ("max_batch = 0\n", "max_batch"),
        ("[device.shg]\nn_in = 0\n", "shg.n_in"),
        (
            "emulate_seconds_per_sample = 1e9\n",
            "emulate_seconds_per_sample",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!("[[device]]\nid = \"a\"\nkind = \"shg\"\n{device}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hiltd"))
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "{device}: started");
        assert!(
            !stdout.contains("listening"),
            "{device}: said it listens: {stdout}"
        );
        assert!(
            stderr.contains("bad.toml:2: device 'a'") && stderr.contains(want),
            "{device}: {stderr}"
        );
    }
}

#[tokio::test]
async fn huge_ids_get_their_own_error_and_tiny_ttls_are_refused() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let huge = "x".repeat(1 << 20);
    let err = c
        .raw()
        .describe_device(v1::DescribeDeviceRequest { device_id: huge })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(
        err.message().contains("(1048576 bytes)"),
        "{}",
        err.message()
    );
    // Too short to outlive its answer, too long for a duration.
    for ttl_seconds in [1e-300, 1e20] {
        let err = c
            .raw()
            .acquire_lease(v1::AcquireLeaseRequest {
                device_id: "loop".into(),
                ttl_seconds,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().starts_with("ttl_seconds: "),
            "{}",
            err.message()
        );
    }
}

type Call<'a> = futures::future::BoxFuture<'a, Result<(), tonic::Status>>;

/// A Stream whose messages are `msgs`, as far as the first answer.
async fn stream_with(
    mut raw: hilt_client::RawClient,
    msgs: Vec<v1::StreamRequest>,
) -> Result<(), tonic::Status> {
    let mut answers = raw.stream(tokio_stream::iter(msgs)).await?.into_inner();
    loop {
        match answers.message().await? {
            None => return Ok(()),
            Some(v1::StreamResponse {
                result: Some(v1::stream_response::Result::Error(e)),
                ..
            }) => return Err(tonic::Status::new(e.code.into(), e.message)),
            Some(_) => {}
        }
    }
}

fn open(device: &str, lease: &str, window: u32) -> v1::StreamRequest {
    v1::StreamRequest {
        kind: Some(v1::stream_request::Kind::Open(v1::StreamOpen {
            device_id: device.into(),
            lease_id: lease.into(),
            window,
        })),
    }
}

fn streamed(seq: u64, req: v1::ExecuteRequest) -> v1::StreamRequest {
    v1::StreamRequest {
        kind: Some(v1::stream_request::Kind::Batch(v1::StreamBatch {
            seq,
            batch: req.batch,
        })),
    }
}

/// A message whose field 1 (a string in every hilt request) is a number:
/// it cannot decode as any of them.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbled {
    #[prost(uint64, tag = "1")]
    field_one: u64,
}

async fn garbled_execute(ch: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Garbled, v1::Measurement>::default();
    grpc.unary(
        tonic::Request::new(Garbled { field_one: 7 }),
        "/hilt.v1.Hilt/Execute".parse().unwrap(),
        codec,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn every_rpc_refuses_bad_input_with_its_code_and_field() {
    let d = Hiltd::start(Some(TEST_CONFIG));
    let c = Client::connect(d.url()).await.unwrap();
    let raw = c.raw();
    let lease = c.acquire("shg0", Duration::from_secs(30)).await.unwrap();
    let l = lease.id().to_string();
    let loop_lease = c.acquire("loop", Duration::from_secs(30)).await.unwrap();
    let ll = loop_lease.id().to_string();
    let ch = tonic::transport::Channel::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let acquire = |device: &str, ttl_seconds: f64, wait_seconds: f64| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::AcquireLeaseRequest {
            device_id: device.into(),
            ttl_seconds,
            wait_seconds,
        };
        Box::pin(async move { raw.acquire_lease(req).await.map(|_| ()) })
    };
    let exec = |req: v1::ExecuteRequest| -> Call<'static> {
        let mut raw = raw.clone();
        Box::pin(async move { raw.execute(req).await.map(|_| ()) })
    };
    let keep = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::KeepAliveRequest {
            lease_id: id.into(),
        };
        Box::pin(async move { raw.keep_alive(req).await.map(|_| ()) })
    };
    let release = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::ReleaseLeaseRequest {
            lease_id: id.into(),
        };
        Box::pin(async move { raw.release_lease(req).await.map(|_| ()) })
    };
    let describe = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::DescribeDeviceRequest {
            device_id: id.into(),
        };
        Box::pin(async move { raw.describe_device(req).await.map(|_| ()) })
    };
    let watch = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::WatchDeviceRequest {
            device_id: id.into(),
        };
        Box::pin(async move { raw.watch_device(req).await.map(|_| ()) })
    };
    let stream = |msgs: Vec<v1::StreamRequest>| -> Call<'static> {
        Box::pin(stream_with(raw.clone(), msgs))
    };
    let break_lease = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::BreakLeaseRequest {
            device_id: id.into(),
            reason: String::new(),
        };
        Box::pin(async move { raw.break_lease(req).await.map(|_| ()) })
    };
    let read = |id: &str| -> Call<'static> {
        let mut raw = raw.clone();
        let req = v1::ReadRecordingRequest {
            device_id: id.into(),
            ..Default::default()
        };
        Box::pin(async move { raw.read_recording(req).await.map(|_| ()) })
    };
    // 64 MiB + 1 KiB of x: over the message limit.
    let oversize = with_batch(&l, |b| {
        b.x = Some(v1::Tensor {
            shape: vec![1_398_123, 12],
            data: vec![0; 1_398_123 * 12 * 4].into(),
        })
    });
    let seq_twice = vec![
        open("shg0", &l, 4),
        streamed(5, good(&l)),
        streamed(5, good(&l)),
    ];

    let cases: Vec<(&str, Call<'static>, Code, &str)> = vec![
        (
            "acquire: no device",
            acquire("", 1.0, 0.0),
            Code::InvalidArgument,
            "device_id: required",
        ),
        (
            "acquire: unknown device",
            acquire("nope", 1.0, 0.0),
            Code::NotFound,
            "unknown device 'nope'",
        ),
        (
            "acquire: negative ttl",
            acquire("shg-clamp", -1.0, 0.0),
            Code::InvalidArgument,
            "ttl_seconds: -1",
        ),
        (
            "acquire: NaN ttl",
            acquire("shg-clamp", f64::NAN, 0.0),
            Code::InvalidArgument,
            "ttl_seconds: NaN",
        ),
        (
            "acquire: infinite ttl",
            acquire("shg-clamp", f64::INFINITY, 0.0),
            Code::InvalidArgument,
            "ttl_seconds: inf",
        ),
        (
            "acquire: ttl above max",
            acquire("shg-clamp", 7200.0, 0.0),
            Code::InvalidArgument,
            "exceeds the server maximum",
        ),
        (
            "acquire: negative wait",
            acquire("shg-clamp", 1.0, -3.0),
            Code::InvalidArgument,
            "wait_seconds: -3",
        ),
        (
            "acquire: NaN wait",
            acquire("shg-clamp", 1.0, f64::NAN),
            Code::InvalidArgument,
            "wait_seconds: NaN",
        ),
        (
            "acquire: wait 1e300",
            acquire("shg-clamp", 1.0, 1e300),
            Code::InvalidArgument,
            "wait_seconds: ",
        ),
        (
            "acquire: held, short wait",
            acquire("shg0", 1.0, 0.05),
            Code::DeadlineExceeded,
            "waiting for the lease",
        ),
        (
            "keepalive: no lease",
            keep(""),
            Code::InvalidArgument,
            "lease_id: required",
        ),
        (
            "keepalive: unknown lease",
            keep("feed"),
            Code::FailedPrecondition,
            "'feed' is not a lease of this daemon",
        ),
        (
            "release: no lease",
            release(""),
            Code::InvalidArgument,
            "lease_id: required",
        ),
        (
            "release: unknown lease",
            release("beef"),
            Code::FailedPrecondition,
            "not a lease of this daemon",
        ),
        (
            "describe: no device",
            describe(""),
            Code::InvalidArgument,
            "device_id: required",
        ),
        (
            "describe: unknown device",
            describe("shg9"),
            Code::NotFound,
            "this daemon serves: ",
        ),
        (
            "watch: unknown device",
            watch("shg9"),
            Code::NotFound,
            "unknown device 'shg9'",
        ),
        (
            "break: unknown device",
            break_lease("shg9"),
            Code::NotFound,
            "unknown device",
        ),
        (
            "read recording: unknown device",
            read("shg9"),
            Code::NotFound,
            "unknown device",
        ),
        (
            "read recording: not recorded",
            read("shg0"),
            Code::FailedPrecondition,
            "is not recorded",
        ),
        (
            "execute: unknown device",
            exec(v1::ExecuteRequest {
                device_id: "shg9".into(),
                ..good(&l)
            }),
            Code::NotFound,
            "unknown device",
        ),
        (
            "execute: another device's lease",
            exec(good(&ll)),
            Code::FailedPrecondition,
            "is for device 'loop', not 'shg0'",
        ),
        (
            "execute: no lease",
            exec(good("")),
            Code::FailedPrecondition,
            "lease_id: missing",
        ),
        (
            "execute: over the message limit",
            exec(oversize),
            Code::ResourceExhausted,
            "at most 64 MiB per message",
        ),
        (
            "execute: does not decode",
            Box::pin(garbled_execute(ch.clone())),
            Code::InvalidArgument,
            "does not decode",
        ),
        (
            "stream: window 0",
            stream(vec![open("shg0", &l, 0)]),
            Code::InvalidArgument,
            "open.window: 0 is not in 1..=256",
        ),
        (
            "stream: window 257",
            stream(vec![open("shg0", &l, 257)]),
            Code::InvalidArgument,
            "open.window: 257",
        ),
        (
            "stream: batch first",
            stream(vec![streamed(1, good(&l))]),
            Code::InvalidArgument,
            "the first message must be `open`",
        ),
        (
            "stream: nothing sent",
            stream(vec![]),
            Code::InvalidArgument,
            "stream ended before `open`",
        ),
        (
            "stream: unknown device",
            stream(vec![open("shg9", &l, 4)]),
            Code::NotFound,
            "unknown device",
        ),
        (
            "stream: foreign lease",
            stream(vec![open("shg0", &ll, 4)]),
            Code::FailedPrecondition,
            "is for device 'loop'",
        ),
        (
            "stream: second open",
            stream(vec![open("shg0", &l, 4), open("shg0", &l, 4)]),
            Code::InvalidArgument,
            "every message after the first must carry a batch",
        ),
        (
            "stream: seq not increasing",
            stream(seq_twice),
            Code::InvalidArgument,
            "batch.seq: 5 is not greater than the previous 5",
        ),
        (
            "stream: bad batch inside",
            stream(vec![
                open("shg0", &l, 4),
                streamed(1, with_batch(&l, |b| b.x = None)),
            ]),
            Code::InvalidArgument,
            "batch.x: missing",
        ),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    for (name, call, code, text) in cases {
        match call.await {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(s) if s.code() != code || !s.message().contains(text) => failures.push(format!(
                "{name}: got {:?} {:?}, want {code:?} containing {text:?}",
                s.code(),
                s.message()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(n >= 30, "{n} cases");
    // The daemon is alive and measures; of all the above only the first
    // batch of "seq not increasing" (3 rows) was good enough to measure.
    assert_eq!(c.describe("shg0").await.unwrap().1.samples_done, 3);
    lease
        .execute(&hilt_core::Batch::shared(
            ndarray::Array2::from_elem((1, 12), 0.5f32),
            &[0.5; 40],
        ))
        .await
        .unwrap();
}
