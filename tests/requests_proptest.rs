//! Every numeric field of `AcquireLeaseRequest`, `ExecuteRequest` and
//! `StreamOpen`, drawn at random (NaN, infinities, zero, huge shapes with
//! few bytes, every u32), through the real service on loopback: the daemon
//! never panics, never allocates what a shape claims before checking the
//! bytes, and answers OK or one of the codes the proto documents.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use hilt_client::{Client, v1};
use hilt_daemon::{Config, EmbeddedDaemon};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tonic::Code;

/// What `proto/hilt/v1/hilt.proto` lists for a request a client got wrong.
const DOCUMENTED: [Code; 7] = [
    Code::InvalidArgument,
    Code::OutOfRange,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
    Code::Unavailable,
];

fn seconds() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(1e300),
        -1e3..1e3f64,
        0.0..5.0f64,
        any::<f64>(),
    ]
}

fn dim() -> impl Strategy<Value = u32> {
    prop_oneof![0..6u32, Just(u32::MAX), Just(1 << 20), any::<u32>()]
}

fn tensor() -> impl Strategy<Value = Option<v1::Tensor>> {
    let t = (
        proptest::collection::vec(dim(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(shape, data)| v1::Tensor {
            shape,
            data: data.into(),
        });
    // Mostly well-formed loopback rows (4 inputs), so the checks past the
    // shape are reached too.
    let rows =
        (1..5u32, proptest::collection::vec(any::<f32>(), 4)).prop_map(|(b, row)| v1::Tensor {
            shape: vec![b, 4],
            data: (0..b)
                .flat_map(|_| row.iter().flat_map(|v| v.to_le_bytes()))
                .collect::<Vec<u8>>()
                .into(),
        });
    prop_oneof![Just(None), t.prop_map(Some), rows.prop_map(Some)]
}

/// Outcomes seen, per call and code: the test must have reached both
/// the accepting and the refusing paths of each call.
static SEEN: std::sync::Mutex<Vec<(&'static str, Code)>> = std::sync::Mutex::new(Vec::new());

/// θ for the loopback (one parameter), or anything `tensor` draws.
fn theta() -> impl Strategy<Value = Option<v1::Tensor>> {
    let one = (-1.0f32..1.0).prop_map(|v| {
        Some(v1::Tensor {
            shape: vec![1, 1],
            data: v.to_le_bytes().to_vec().into(),
        })
    });
    prop_oneof![tensor(), one]
}

fn check(what: &'static str, r: Result<(), tonic::Status>) -> Result<(), TestCaseError> {
    SEEN.lock()
        .unwrap()
        .push((what, r.as_ref().map_or_else(|s| s.code(), |()| Code::Ok)));
    match r {
        Ok(()) => Ok(()),
        Err(s) if DOCUMENTED.contains(&s.code()) => Ok(()),
        Err(s) => Err(TestCaseError::fail(format!(
            "{what}: undocumented {:?} {:?}",
            s.code(),
            s.message()
        ))),
    }
}

#[test]
fn random_numbers_in_every_request_get_documented_answers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = Config::parse(common::TEST_CONFIG, "test").unwrap();
    let daemon = rt
        .block_on(EmbeddedDaemon::start(
            config,
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let client = rt.block_on(Client::connect(daemon.url())).unwrap();
    let lease = rt
        .block_on(client.acquire("loop", Duration::from_secs(60)))
        .unwrap();
    let lease_id = lease.id().to_string();
    let raw = client.raw();
    // A runner counts cases over its life: a fresh one per request type.
    let runner = || {
        TestRunner::new(RunnerConfig {
            cases: 200,
            failure_persistence: None,
            ..RunnerConfig::default()
        })
    };

    // AcquireLease on a free device: a grant is released at once.
    runner()
        .run(&(seconds(), seconds()), |(ttl, wait)| {
            rt.block_on(async {
                let mut raw = raw.clone();
                let r = raw
                    .acquire_lease(v1::AcquireLeaseRequest {
                        device_id: "shg-clamp".into(),
                        ttl_seconds: ttl,
                        wait_seconds: wait,
                    })
                    .await;
                if let Ok(l) = &r {
                    raw.release_lease(v1::ReleaseLeaseRequest {
                        lease_id: l.get_ref().lease_id.clone(),
                    })
                    .await
                    .unwrap();
                }
                check("AcquireLease", r.map(|_| ()))
            })
        })
        .unwrap();

    // Execute with random shapes, bytes, repeats.
    let batch = (tensor(), theta(), any::<u32>(), any::<bool>()).prop_map(
        |(x, theta, repeats, return_repeats)| v1::Batch {
            x,
            theta,
            repeats: repeats % 100,
            return_repeats,
        },
    );
    runner()
        .run(&batch, |b| {
            rt.block_on(async {
                let r = raw
                    .clone()
                    .execute(v1::ExecuteRequest {
                        device_id: "loop".into(),
                        lease_id: lease_id.clone(),
                        batch: Some(b),
                    })
                    .await;
                check("Execute", r.map(|_| ()))
            })
        })
        .unwrap();
    // Every u32 as a repeat count, on one row so the valid ones are
    // quick: 0 is invalid, 1..=64 (the device's max_repeats) measure, more
    // is over the device's maximum.
    runner()
        .run(&prop_oneof![any::<u32>(), 0..70u32], |repeats| {
            rt.block_on(async {
                let r = raw
                    .clone()
                    .execute(v1::ExecuteRequest {
                        device_id: "loop".into(),
                        lease_id: lease_id.clone(),
                        batch: Some(v1::Batch {
                            x: Some(v1::Tensor {
                                shape: vec![1, 4],
                                data: vec![0; 16].into(),
                            }),
                            theta: Some(v1::Tensor {
                                shape: vec![1, 1],
                                data: vec![0; 4].into(),
                            }),
                            repeats,
                            return_repeats: false,
                        }),
                    })
                    .await;
                let want = match repeats {
                    0 => Code::InvalidArgument,
                    1..=64 => Code::Ok,
                    _ => Code::ResourceExhausted,
                };
                let got = r.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
                prop_assert_eq!(got, want, "repeats {}", repeats);
                check("Execute repeats", r.map(|_| ()))
            })
        })
        .unwrap();

    // StreamOpen: every window.
    runner()
        .run(
            &prop_oneof![Just(0u32), Just(256), Just(257), any::<u32>(), 1..300u32],
            |window| {
                rt.block_on(async {
                    let open = v1::StreamRequest {
                        kind: Some(v1::stream_request::Kind::Open(v1::StreamOpen {
                            device_id: "loop".into(),
                            lease_id: lease_id.clone(),
                            window,
                        })),
                    };
                    let r = raw.clone().stream(tokio_stream::iter([open])).await;
                    let ok = r.is_ok();
                    prop_assert_eq!(ok, (1..=256).contains(&window), "window {}", window);
                    check("Stream", r.map(|_| ()))
                })
            },
        )
        .unwrap();

    let seen = SEEN.lock().unwrap().clone();
    for what in ["AcquireLease", "Execute", "Stream"] {
        for code in [Code::Ok, Code::InvalidArgument] {
            let n = seen.iter().filter(|s| **s == (what, code)).count();
            assert!(
                n > 0,
                "{what}: no {code:?} among {} cases: {seen:?}",
                seen.len()
            );
        }
    }
    let n = seen.iter().filter(|s| s.0 == "Execute repeats").count();
    assert_eq!(n, 200);
    drop(lease);
    rt.block_on(daemon.shutdown()).unwrap();
}
