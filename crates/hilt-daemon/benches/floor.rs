//! hiltd against the floor, in one run: a bare tonic echo service
//! (`proto/hilt/echo/v1`) started beside hiltd in this process, carrying
//! requests and replies of exactly the sizes `Execute` and `Stream` carry
//! for the 64 × 8 loopback device. Both are called through raw tonic
//! clients with the messages built once and cloned per call, so client
//! work is the same on both sides and what differs is what hiltd does
//! between decode and encode (lease check, validate, actor, device).
//!
//! - **Unary**: `Execute` and `Echo.Unary` taken in turn, 1 × 64 and
//!   256 × 64 batches; p50, p90 and the ratio of the p50s.
//! - **Streamed**: `Stream` and `Echo.Bidi` with at most `WINDOW`
//!   messages in flight, in turn over several passes; the median
//!   messages per second of each and their ratio.
//!
//! `cargo bench -p hilt-daemon --bench floor`

use std::sync::Arc;
use std::time::{Duration, Instant};

use hilt_core::Batch;
use hilt_daemon::{Config, EmbeddedDaemon};
use hilt_proto::echo::echo_client::EchoClient;
use hilt_proto::echo::echo_server::{Echo, EchoServer};
use hilt_proto::echo::{EchoReply, EchoRequest};
use hilt_proto::v1::hilt_client::HiltClient;
use hilt_proto::v1::{self, stream_request::Kind};
use ndarray::Array2;
use prost::Message;
use prost::bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

mod common;
use common::{LOOPBACK_CONFIG as CONFIG, quantile};

const ROUNDS: usize = 3000;
const WARMUP: usize = 300;
const WINDOW: usize = 32;
const STREAMED: usize = 4000;
/// Streamed passes of each, taken in turn.
const STREAM_PASSES: usize = 5;

/// Replies with as many bytes as asked for, cut from one buffer made at
/// start: the floor, with no work of its own beyond tonic's.
struct Bare(Bytes);

/// Larger than any reply asked for here.
const REPLY_BUFFER: usize = 1 << 20;

#[tonic::async_trait]
impl Echo for Bare {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let n = (req.into_inner().reply_bytes as usize).min(REPLY_BUFFER);
        Ok(Response::new(EchoReply {
            payload: self.0.slice(..n),
        }))
    }

    type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn bidi(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(WINDOW);
        let buffer = self.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = inbound.next().await {
                let n = (m.reply_bytes as usize).min(REPLY_BUFFER);
                let reply = EchoReply {
                    payload: buffer.slice(..n),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn serve_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Bare(Bytes::from(vec![0u8; REPLY_BUFFER]))))
            // As hiltd's own listener: no Nagle delay on small replies.
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    format!("http://{addr}")
}

async fn channel(url: String) -> Channel {
    Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `n` messages through a bidirectional stream with at most `WINDOW` in
/// flight; `make` builds the k-th. Messages per second.
async fn windowed<R: Send + 'static>(
    n: usize,
    tx: mpsc::Sender<R>,
    make: impl Fn(u64) -> R + Send + 'static,
    mut replies: impl tokio_stream::Stream<Item = Result<(), Status>> + Unpin,
) -> f64 {
    let credits = Arc::new(Semaphore::new(WINDOW));
    let sender_credits = Arc::clone(&credits);
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        for k in 0..n {
            sender_credits.acquire().await.expect("credits").forget();
            if tx.send(make(k as u64)).await.is_err() {
                break;
            }
        }
    });
    for _ in 0..n {
        replies
            .next()
            .await
            .expect("a reply for every message")
            .expect("answered");
        credits.add_permits(1);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    sender.await.expect("sender");
    rate
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` must not run
    // for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let daemon = EmbeddedDaemon::start(
            Config::parse(CONFIG, "floor").expect("bench config"),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("daemon starts");
        let mut hilt = HiltClient::new(channel(daemon.url()).await);
        let mut echo = EchoClient::new(channel(serve_echo().await).await);
        let lease = hilt
            .acquire_lease(v1::AcquireLeaseRequest {
                device_id: "loop".into(),
                ttl_seconds: 600.0,
                ..Default::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .lease_id;

        println!("unary round trip, {ROUNDS} of each, taken in turn (64 × 8 loopback)");
        println!(
            "{:<10} {:>8} {:>8} {:>11} {:>11} {:>11} {:>11} {:>8}",
            "batch", "req B", "reply B", "echo p50", "echo p90", "exec p50", "exec p90", "ratio"
        );
        let mut streamed = Vec::new();
        for rows in [1usize, 256] {
            let batch = Batch::shared(
                Array2::from_shape_fn((rows, 64), |(i, j)| ((i * 64 + j) % 100) as f32 / 100.0),
                &[0.0; 8],
            );
            let exec = v1::ExecuteRequest {
                device_id: "loop".into(),
                lease_id: lease.clone(),
                batch: Some((&batch).into()),
            };
            let reply_bytes = hilt
                .execute(exec.clone())
                .await
                .expect("measured")
                .into_inner()
                .encoded_len();
            let ping = EchoRequest {
                payload: vec![1u8; exec.encoded_len().saturating_sub(3)].into(),
                reply_bytes: reply_bytes as u32,
            };
            let mut times = [Vec::new(), Vec::new()];
            for round in 0..WARMUP + ROUNDS {
                for k in 0..2 {
                    // Which goes first alternates.
                    let which = (round + k) % 2;
                    let t = Instant::now();
                    if which == 0 {
                        std::hint::black_box(echo.unary(ping.clone()).await.expect("echo"));
                    } else {
                        std::hint::black_box(hilt.execute(exec.clone()).await.expect("measured"));
                    }
                    if round >= WARMUP {
                        times[which].push(t.elapsed());
                    }
                }
            }
            for t in &mut times {
                t.sort();
            }
            let (e50, x50) = (quantile(&times[0], 0.5), quantile(&times[1], 0.5));
            println!(
                "{:<10} {:>8} {:>8} {:>9.0}µs {:>9.0}µs {:>9.0}µs {:>9.0}µs {:>7.2}×",
                format!("{rows} × 64"),
                exec.encoded_len(),
                reply_bytes,
                micros(e50),
                micros(quantile(&times[0], 0.9)),
                micros(x50),
                micros(quantile(&times[1], 0.9)),
                x50.as_secs_f64() / e50.as_secs_f64()
            );

            // Streamed, window WINDOW: echo and Stream in turn, the median
            // rate of each (one pass at 1 × 64 lasts some 30 ms, and this
            // machine's scheduling moves a single pass by ±20 %).
            let (mut echo_rates, mut stream_rates) = (Vec::new(), Vec::new());
            for _ in 0..STREAM_PASSES {
                let (etx, erx) = mpsc::channel(WINDOW);
                let replies = echo
                    .bidi(ReceiverStream::new(erx))
                    .await
                    .expect("bidi")
                    .into_inner()
                    .map(|r| r.map(drop));
                let p = ping.clone();
                let echo_rate = windowed(STREAMED, etx, move |_| p.clone(), replies).await;

                let (htx, hrx) = mpsc::channel(WINDOW + 1);
                htx.send(v1::StreamRequest {
                    kind: Some(Kind::Open(v1::StreamOpen {
                        device_id: "loop".into(),
                        lease_id: lease.clone(),
                        window: WINDOW as u32,
                    })),
                })
                .await
                .expect("open");
                let replies = hilt
                    .stream(ReceiverStream::new(hrx))
                    .await
                    .expect("stream")
                    .into_inner()
                    .map(|r| {
                        r.and_then(|a| match a.result {
                            Some(v1::stream_response::Result::Measurement(_)) => Ok(()),
                            other => Err(Status::internal(format!("not measured: {other:?}"))),
                        })
                    });
                // Built once and cloned per message (its tensors are shared
                // bytes), as the echo's request is.
                let b = exec.batch.clone();
                let make = move |seq| v1::StreamRequest {
                    kind: Some(Kind::Batch(v1::StreamBatch {
                        seq,
                        batch: b.clone(),
                    })),
                };
                let stream_rate = windowed(STREAMED, htx, make, replies).await;
                echo_rates.push(echo_rate);
                stream_rates.push(stream_rate);
            }
            let (echo_rate, stream_rate) = (median(echo_rates), median(stream_rates));
            streamed.push((rows, echo_rate, stream_rate));
        }
        println!(
            "\nstreamed, window {WINDOW}, {STREAMED} messages a pass, median of {STREAM_PASSES} passes each"
        );
        println!(
            "{:<10} {:>14} {:>14} {:>8}",
            "batch", "bidi echo /s", "Stream /s", "ratio"
        );
        for (rows, e, s) in streamed {
            println!(
                "{:<10} {:>14.0} {:>14.0} {:>7.2}×",
                format!("{rows} × 64"),
                e,
                s,
                s / e
            );
        }
        daemon.shutdown().await.expect("clean shutdown");
    });
}
