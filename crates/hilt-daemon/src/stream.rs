//! The bidirectional `Stream` RPC: batches in, measurements out in
//! sequence order, at most `window` in flight. The reader queues batch n+1
//! on the device while batch n measures, so a trainer that keeps the
//! window full keeps the rig busy.

use std::sync::Arc;

use hilt_proto::v1::{self, stream_request::Kind, stream_response::Result as Answer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::{Status, Streaming};

use crate::Error;
use crate::actor::Pending;
use crate::auth::{Caller, Role};
use crate::daemon::Daemon;

/// The most batches a `Stream` may have in flight: enough to keep any rig
/// busy, few enough that a client cannot make the daemon hold its memory.
pub const MAX_WINDOW: u32 = 256;

/// How long a new `Stream` may take to send its `open`: a client that
/// opens streams and says nothing would otherwise hold a task each.
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

enum Item {
    /// Submitted at the instant given, for the latency histogram.
    Queued(u64, Pending, std::time::Instant),
    Failed(u64, Error),
    /// Ends the stream with a status once earlier answers are out.
    Fatal(Status),
}

type Out = Result<v1::StreamResponse, Status>;

pub(crate) async fn open(
    shared: Arc<Daemon>,
    caller: Caller,
    mut inbound: Streaming<v1::StreamRequest>,
) -> Result<impl futures::Stream<Item = Out> + Send + 'static, Error> {
    let first = tokio::time::timeout(OPEN_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Error::InvalidArgument {
            field: "open",
            reason: format!(
                "no `open` message within {} s of the stream starting",
                OPEN_TIMEOUT.as_secs()
            ),
        })?
        .map_err(|s| {
            let s = crate::codes::fix(s);
            match s.code() {
                tonic::Code::ResourceExhausted => Error::Exhausted(s.message().to_string()),
                _ => Error::InvalidArgument {
                    field: "open",
                    reason: s.message().to_string(),
                },
            }
        })?
        .ok_or(Error::InvalidArgument {
            field: "open",
            reason: "stream ended before `open`".into(),
        })?;
    let Some(Kind::Open(open)) = first.kind else {
        return Err(Error::InvalidArgument {
            field: "open",
            reason: "the first message must be `open` (device_id, lease_id, window)".into(),
        });
    };
    if open.window == 0 || open.window > MAX_WINDOW {
        return Err(Error::InvalidArgument {
            field: "open.window",
            reason: format!("{} is not in 1..={MAX_WINDOW}", open.window),
        });
    }
    caller.may("Stream", Role::Operator, Some(&open.device_id))?;
    let dev = shared.registry.get(&open.device_id)?.clone();
    let metrics = dev.metrics.clone();
    // Check the lease now so a bad open fails the call itself.
    drop(shared.use_lease(&dev, &open.lease_id)?);

    let window = open.window as usize;
    let credits = Arc::new(Semaphore::new(window));
    // An item holds its credit until answered; the shutdown notice needs
    // none.
    let (queue_tx, queue_rx) = mpsc::unbounded_channel::<(Item, Option<OwnedSemaphorePermit>)>();

    // Reader: takes a credit, then reads and queues one batch.
    let stop = shared.stop.clone();
    tokio::spawn(async move {
        let mut last_seq: Option<u64> = None;
        // A stream cut by shutdown ends UNAVAILABLE (after the answers
        // already due), never OK: the client must not take it for done.
        let shutting_down = || {
            let status = Status::from(Error::ShuttingDown);
            let _ = queue_tx.send((Item::Fatal(status), None));
        };
        // One waiter on the token for the task's life, not one added and
        // removed (under the token's lock) twice per message.
        let cancelled = stop.cancelled();
        tokio::pin!(cancelled);
        loop {
            let credit = tokio::select! {
                () = &mut cancelled => { shutting_down(); break }
                c = Arc::clone(&credits).acquire_owned() => match c { Ok(c) => c, Err(_) => break },
            };
            let msg = tokio::select! {
                () = &mut cancelled => { shutting_down(); break }
                m = inbound.message() => m,
            };
            let req = match msg {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(status) => {
                    // A message too large or that does not decode ends
                    // the stream with its code (after the answers due); a
                    // client that went away is told nothing.
                    tracing::debug!(%status, "stream inbound ended with an error");
                    let _ = queue_tx.send((Item::Fatal(crate::codes::fix(status)), None));
                    break;
                }
            };
            let item = match req.kind {
                Some(Kind::Batch(b)) => {
                    if last_seq.is_some_and(|l| b.seq <= l) {
                        Item::Failed(
                            b.seq,
                            Error::InvalidArgument {
                                field: "batch.seq",
                                reason: format!(
                                    "{} is not greater than the previous {}",
                                    b.seq,
                                    last_seq.unwrap_or_default()
                                ),
                            },
                        )
                    } else {
                        last_seq = Some(b.seq);
                        let started = std::time::Instant::now();
                        match shared
                            .submit(&dev, &caller, &open.lease_id, b.batch.as_ref())
                            .await
                        {
                            Ok(pending) => Item::Queued(b.seq, pending, started),
                            Err(e) => Item::Failed(b.seq, e),
                        }
                    }
                }
                Some(Kind::Open(_)) | None => Item::Fatal(Status::from(Error::InvalidArgument {
                    field: "batch",
                    reason: "every message after the first must carry a batch".into(),
                })),
            };
            let fatal = matches!(item, Item::Fatal(_));
            if queue_tx.send((item, Some(credit))).is_err() || fatal {
                break;
            }
        }
    });

    // The answers, strictly in the order the batches were read: the
    // response stream itself, polled by tonic's encoder, so an answer goes
    // from the device's reply to the wire with no task between them. A
    // credit comes back as its answer is handed over.
    let answers = futures::stream::unfold(Some((queue_rx, metrics)), |state| {
        async move {
            let (mut rx, metrics) = state?;
            let (item, credit) = rx.recv().await?;
            let (seq, result) = match item {
                Item::Queued(seq, pending, started) => {
                    (seq, metrics.count(started, pending.answer().await))
                }
                Item::Failed(seq, e) => {
                    metrics.failed(e.code());
                    (seq, Err(e))
                }
                // The last item: nothing after it is read.
                Item::Fatal(status) => return Some((Err(status), None)),
            };
            drop(credit);
            let answer = match result {
                Ok(m) => Answer::Measurement(m),
                Err(e) => Answer::Error(e.into()),
            };
            let response = v1::StreamResponse {
                seq,
                result: Some(answer),
            };
            Some((Ok(response), Some((rx, metrics))))
        }
    });
    Ok(answers)
}
