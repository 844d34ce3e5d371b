//! hiltd on a lab network, tried as a lab would: a real `hiltd` with TLS
//! certificates and tokens made here, clients with and without them,
//! roles and device lists, the admin's halt and lease break, mTLS, the
//! refusal to listen openly by accident, interlocks, resource bounds and
//! the Prometheus endpoint.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Hiltd;
use common::tls::{Pki, pki};
use futures::StreamExt;
use hilt_client::{Client, ClientError, ConnectOptions, v1};
use hilt_core::Batch;
use ndarray::Array2;
use tonic::Code;

const TTL: Duration = Duration::from_secs(30);
const OBSERVER: &str = "obs-4f1c0a2e9b7d44e1a3c5";
const OPERATOR: &str = "op-8e2d7c6b5a4f3e2d1c0b";
const ADMIN: &str = "admin-1a2b3c4d5e6f7a8b9c0d";

fn token_block(name: &str, role: &str, token: &str, devices: Option<&str>) -> String {
    let devices = devices.map_or(String::new(), |d| format!("devices = {d}\n"));
    format!(
        "[[server.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n{devices}\n",
        hex::encode(hilt_core::token::sha256(token))
    )
}

const DEVICES: &str = r#"
[[device]]
id = "loop"
kind = "loopback"
max_batch = 256
[device.loopback]
n_in = 4
n_par = 1

[[device]]
id = "loop2"
kind = "loopback"
[device.loopback]
n_in = 4
n_par = 1
"#;

/// A TLS daemon with an observer, an operator of `loop` only and an admin.
fn secured(pki: &Pki, client_ca: bool, extra_server: &str) -> Hiltd {
    let ca_line = if client_ca {
        "client_ca = \"clients-ca.pem\"\n"
    } else {
        ""
    };
    let config = format!(
        "[server]\n{extra_server}\n[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
         {ca_line}\n{}{}{}{DEVICES}",
        token_block("olga", "observer", OBSERVER, None),
        token_block("alice", "operator", OPERATOR, Some("[\"loop\"]")),
        token_block("boss", "admin", ADMIN, None),
    );
    let files: [(&str, &[u8]); 3] = [
        ("server.pem", pki.server_cert.as_bytes()),
        ("server.key", pki.server_key.as_bytes()),
        ("clients-ca.pem", pki.client_ca.as_bytes()),
    ];
    Hiltd::launch(Some(&config), &files, &["--listen", "127.0.0.1:0"])
}

fn options(pki: &Pki, token: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        ca_pem: Some(pki.ca.as_bytes().to_vec()),
        token: token.map(str::to_string),
        ..ConnectOptions::default()
    }
}

async fn client(d: &Hiltd, pki: &Pki, token: Option<&str>) -> Client {
    Client::connect_with(d.https_url(), &options(pki, token))
        .await
        .unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code().unwrap_or(Code::Unknown), e.to_string())
}

fn batch(rows: usize) -> Batch {
    Batch::shared(Array2::from_elem((rows, 4), 0.5f32), &[0.25])
}

#[tokio::test]
async fn tokens_and_roles_decide_who_may_do_what() {
    let pki = pki();
    let d = secured(&pki, false, "");

    // No token, a wrong token: UNAUTHENTICATED, before any handler runs.
    let anon = client(&d, &pki, None).await;
    let (c, msg) = code(anon.list_devices().await);
    assert_eq!(c, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("Bearer"), "{msg}");
    let wrong = client(&d, &pki, Some("not-a-token-of-this-daemon")).await;
    assert_eq!(code(wrong.list_devices().await).0, Code::Unauthenticated);

    // Observer: discovery and describe, not leases or Execute.
    let obs = client(&d, &pki, Some(OBSERVER)).await;
    assert_eq!(obs.list_devices().await.unwrap().len(), 2);
    obs.describe("loop").await.unwrap();
    let (c, msg) = code(obs.acquire("loop", TTL).await);
    assert_eq!(c, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("olga") && msg.contains("observer"), "{msg}");
    let exec = obs
        .raw()
        .execute(v1::ExecuteRequest {
            device_id: "loop".into(),
            lease_id: "whatever".into(),
            batch: Some((&batch(1)).into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exec.code(), Code::PermissionDenied, "{exec}");
    assert!(exec.message().contains("Execute"), "{exec}");

    // Operator: its own device works, another is refused by name.
    let op = client(&d, &pki, Some(OPERATOR)).await;
    let (c, msg) = code(op.acquire("loop2", TTL).await);
    assert_eq!(c, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("loop2"), "{msg}");
    let lease = op.acquire("loop", TTL).await.unwrap();
    let m = lease.execute(&batch(3)).await.unwrap();
    assert_eq!(m.y.shape(), &[3, 4]);
    // Only an admin halts or breaks leases.
    let halt = op
        .raw()
        .halt(v1::HaltRequest {
            reason: "mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(halt.code(), Code::PermissionDenied, "{halt}");

    // Health stays reachable for observers, and only with a token.
    let ch = tonic::transport::Channel::from_shared(d.https_url())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ask = |token: Option<&'static str>| {
        let ch = ch.clone();
        async move {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
            let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
                service: "loop".into(),
            });
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            h.check(req).await.map(|r| r.into_inner().status)
        }
    };
    assert_eq!(ask(None).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(ask(Some(OBSERVER)).await.unwrap(), 1, "SERVING");

    lease.release().await.unwrap();
    // The audit trail names the token, never the token itself.
    let log = d.log();
    assert!(
        log.contains("lease.acquire") && log.contains("alice"),
        "{log}"
    );
    assert!(log.contains("lease.release"), "{log}");
    assert!(
        log.contains("event=\"refused\"") && log.contains("call=\"AcquireLease\""),
        "{log}"
    );
    for secret in [OBSERVER, OPERATOR, ADMIN] {
        assert!(!log.contains(secret), "a token in the log: {secret}");
    }
}

#[tokio::test]
async fn plaintext_against_tls_fails_and_mtls_needs_a_client_certificate() {
    let pki = pki();
    let d = secured(&pki, true, "");
    // A plaintext client gets nowhere on the TLS port.
    let plain = async {
        Client::connect_with(d.url(), &ConnectOptions::default())
            .await?
            .list_devices()
            .await
    };
    assert!(plain.await.is_err());
    // TLS without a client certificate: the handshake is refused.
    let no_cert = async {
        Client::connect_with(d.https_url(), &options(&pki, Some(OBSERVER)))
            .await?
            .list_devices()
            .await
    };
    assert!(no_cert.await.is_err());
    // With one signed by the client CA (and the token) it works.
    let mut o = options(&pki, Some(OBSERVER));
    o.identity = Some((
        pki.client_cert.as_bytes().to_vec(),
        pki.client_key.as_bytes().to_vec(),
    ));
    let c = Client::connect_with(d.https_url(), &o).await.unwrap();
    assert_eq!(c.list_devices().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_admin_halts_resumes_and_breaks_a_lease() {
    let pki = pki();
    let d = secured(&pki, false, "");
    let op = client(&d, &pki, Some(OPERATOR)).await;
    let admin = client(&d, &pki, Some(ADMIN)).await;
    let lease = op.acquire("loop", TTL).await.unwrap();
    let mut events = admin.watch("loop").await.unwrap();

    let (safe, not_safe) = admin.halt("laser enclosure open").await.unwrap();
    assert_eq!(safe, ["loop", "loop2"], "{not_safe:?}");
    let (c, msg) = code(lease.execute(&batch(1)).await);
    assert_eq!(c, Code::Unavailable, "{msg}");
    assert!(
        msg.contains("halted by boss: laser enclosure open"),
        "{msg}"
    );
    // Watchers see it.
    loop {
        let e = events.next().await.unwrap().unwrap();
        if let Some(why) = &e.status.halted {
            assert!(why.contains("boss"), "{why}");
            break;
        }
    }
    admin.resume().await.unwrap();
    lease.execute(&batch(1)).await.unwrap();

    // Breaking alice's lease: her next batch says who broke it and why.
    assert!(admin.break_lease("loop", "alignment").await.unwrap());
    assert!(
        !admin.break_lease("loop2", "").await.unwrap(),
        "nobody held it"
    );
    let (c, msg) = code(lease.execute(&batch(1)).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("broken by boss: alignment"), "{msg}");
    let log = d.log();
    // Each device was sent to its safe state once the halt was in force.
    for event in [
        "event=\"halt\"",
        "event=\"safe\" device=loop ",
        "event=\"safe\" device=loop2 ",
        "event=\"resume\"",
        "event=\"lease.break\"",
    ] {
        assert!(log.contains(event), "no {event} in the audit log:\n{log}");
    }
}

#[tokio::test]
async fn a_generic_reflection_client_with_the_token_lists_the_service() {
    let pki = pki();
    let d = secured(&pki, false, "");
    let ch = tonic::transport::Channel::from_shared(d.https_url())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let list = |token: Option<&'static str>| {
        let ch = ch.clone();
        async move {
            let mut c = ServerReflectionClient::new(ch);
            let mut req = tonic::Request::new(tokio_stream::iter([
                tonic_reflection::pb::v1::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
            ]));
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            let mut s = c.server_reflection_info(req).await?.into_inner();
            let r = s.message().await?.unwrap();
            Ok::<_, tonic::Status>(r.message_response.unwrap())
        }
    };
    assert_eq!(list(None).await.unwrap_err().code(), Code::Unauthenticated);
    let MessageResponse::ListServicesResponse(services) = list(Some(OBSERVER)).await.unwrap()
    else {
        panic!("no service list")
    };
    let names: Vec<&str> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"hilt.v1.Hilt"), "{names:?}");
}

#[test]
fn hiltd_refuses_to_listen_openly_unless_told_insecure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hiltd"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "said it listens");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--insecure"),
        "{err}"
    );
    assert!(
        err.contains("[server.tls]") && err.contains("hilt token new"),
        "{err}"
    );

    let mut d = Hiltd::launch(None, &[], &["--listen", "0.0.0.0:0", "--insecure"]);
    assert!(d.addr.ip().is_unspecified(), "{}", d.addr);
    d.terminate();
    assert!(d.log().contains("--insecure"), "{}", d.log());
}

const LAB: &str = r#"
[server]
metrics_listen = "127.0.0.1:0"
max_waiters = 1

[[device]]
id = "loop"
kind = "loopback"
max_batch = 256
[device.loopback]
n_in = 4
n_par = 1
[device.interlock]
max_samples_per_s = 2
rate_window_s = 50

[[device]]
id = "slow"
kind = "shg"
seed = 3
emulate_seconds_per_sample = 0.01
"#;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the sample line starting with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn interlocks_waiter_bounds_and_metrics() {
    let mut d = Hiltd::start(Some(LAB));
    let line = d.next_line();
    let metrics = line.strip_prefix("hiltd metrics on ").unwrap().to_string();
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("loop", TTL).await.unwrap();

    let before = scrape(&metrics);
    assert_eq!(value(&before, "hilt_batches_total{device=\"loop\"}"), 0.0);
    assert_eq!(value(&before, "hilt_lease_held{device=\"loop\"}"), 1.0);
    assert_eq!(
        value(
            &before,
            "hilt_device_state{device=\"loop\",state=\"ready\"}"
        ),
        1.0
    );

    // 60 + 30 samples fit the budget of 100 per 50 s; 20 more do not.
    lease.execute(&batch(60)).await.unwrap();
    lease.execute(&batch(30)).await.unwrap();
    let (c1, msg) = code(lease.execute(&batch(20)).await);
    assert_eq!(c1, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("interlock: sample budget of 100 samples per 50 s"),
        "{msg}"
    );
    assert!(msg.contains("room again in"), "{msg}");
    // A NaN is refused by validation, before the interlock charges it.
    let mut bad = batch(1);
    bad.x[[0, 0]] = f32::NAN;
    assert!(lease.execute(&bad).await.is_err());

    // One waiter may wait; the second is told the line is full.
    let c2 = Client::connect(d.url()).await.unwrap();
    let mut events = c2.watch("loop").await.unwrap();
    let waiting =
        tokio::spawn(async move { c2.acquire("loop", TTL).await.map(|l| l.id().to_string()) });
    loop {
        let e = events.next().await.unwrap().unwrap();
        if e.status.waiters == 1 {
            break;
        }
    }
    let c3 = Client::connect(d.url()).await.unwrap();
    let (c3code, msg) = code(c3.acquire("loop", TTL).await);
    assert_eq!(c3code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("max_waiters"), "{msg}");

    let after = scrape(&metrics);
    assert_eq!(value(&after, "hilt_batches_total{device=\"loop\"}"), 2.0);
    assert_eq!(value(&after, "hilt_samples_total{device=\"loop\"}"), 90.0);
    assert_eq!(
        value(
            &after,
            "hilt_interlock_refused_batches_total{device=\"loop\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "hilt_errors_total{device=\"loop\",code=\"FAILED_PRECONDITION\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "hilt_errors_total{device=\"loop\",code=\"RESOURCE_EXHAUSTED\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "hilt_errors_total{device=\"loop\",code=\"INVALID_ARGUMENT\"}"
        ),
        1.0
    );
    assert_eq!(value(&after, "hilt_lease_waiters{device=\"loop\"}"), 1.0);
    assert_eq!(
        value(
            &after,
            "hilt_execute_latency_seconds_count{device=\"loop\"}"
        ),
        2.0
    );
    assert!(value(&after, "hilt_busy_seconds_total{device=\"loop\"}") > 0.0);

    lease.release().await.unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_batch_whose_caller_left_stops_holding_the_rig() {
    let d = Hiltd::start(Some(LAB));
    let c = Client::connect(d.url()).await.unwrap();
    let lease = c.acquire("slow", TTL).await.unwrap();
    // 400 rows at 10 ms: 4 s of rig time; the caller gives up at 0.3 s.
    let mut raw = c.raw();
    let mut req = tonic::Request::new(v1::ExecuteRequest {
        device_id: "slow".into(),
        lease_id: lease.id().into(),
        batch: Some((&Batch::shared(Array2::from_elem((400, 12), 0.5f32), &[0.5; 40])).into()),
    });
    req.set_timeout(Duration::from_millis(300));
    let err = raw.execute(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    // The next batch is measured: the device was freed, not left busy.
    let one = Batch::shared(Array2::from_elem((1, 12), 0.5f32), &[0.5; 40]);
    lease.execute(&one).await.unwrap();
    let log = d.log();
    assert!(log.contains("caller gone: batch given up"), "{log}");
}

#[tokio::test]
async fn silent_connections_are_capped_and_closed_and_a_silent_stream_is_ended() {
    let d = Hiltd::start(Some(
        "[server]\nmax_connections = 3\n[[device]]\nid = \"loop\"\nkind = \"loopback\"\n\
         [device.loopback]\nn_in = 4\nn_par = 1\n",
    ));
    // Three sockets that never speak take every slot: the fourth
    // connection is closed at once.
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(d.addr).unwrap())
        .collect();
    let mut fourth = std::net::TcpStream::connect(d.addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    fourth
        .read_to_end(&mut got)
        .expect("the fourth connection is closed");
    assert!(got.is_empty(), "the fourth connection was served");
    // The silent ones are closed after the preface timeout (having been
    // sent the server's own HTTP/2 settings, nothing more).
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("a silent socket kept open");
    }
    assert!(d.log().contains("max_connections"), "{}", d.log());

    // A Stream that never sends `open` is ended.
    let c = Client::connect(d.url()).await.unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel::<v1::StreamRequest>(1);
    let err = c
        .raw()
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("no `open` message within"), "{err}");
}
