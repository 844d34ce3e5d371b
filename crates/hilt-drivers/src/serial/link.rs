use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hilt_wire::{ErrorCode, Frame, FrameError, Message, Refusal, WireCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

/// Timing of the request/reply discipline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkOptions {
    /// How long one attempt waits for its reply.
    pub timeout: Duration,
    /// After a fault, input is discarded until the line has been silent
    /// this long, so a late reply cannot sit in the buffer.
    pub quiet: Duration,
    /// Attempts for an idempotent request (at least 1).
    pub attempts: u32,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            timeout: Duration::from_secs(2),
            quiet: Duration::from_millis(20),
            attempts: 3,
        }
    }
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing came back in time (retryable).
    #[error("no reply to seq {seq} within {timeout:?}")]
    Timeout {
        /// The request's sequence number.
        seq: u32,
        /// How long it waited.
        timeout: Duration,
    },
    /// A reply arrived but failed its check (retryable).
    #[error("reply to seq {seq} arrived corrupted: {error}")]
    Corrupt {
        /// The request's sequence number.
        seq: u32,
        /// What was wrong with the frame.
        error: FrameError,
    },
    /// The board understood and said no.
    #[error("board refused seq {seq} ({code:?}): {detail}", code = .refusal.code, detail = .refusal.detail)]
    Refused {
        /// The request's sequence number.
        seq: u32,
        /// The board's code and reason.
        refusal: Refusal,
    },
    /// A well-formed reply of the wrong kind: the board and host disagree
    /// on the protocol.
    #[error("board answered seq {seq} with a {got:#04x} where {want:#04x} was due")]
    Unexpected {
        /// The request's sequence number.
        seq: u32,
        /// The reply kind the request calls for.
        want: u8,
        /// The kind that came.
        got: u8,
    },
    /// The port is gone (unplugged).
    #[error("the port closed")]
    Closed,
    /// Reading or writing the port failed.
    #[error("I/O: {0}")]
    Io(String),
}

impl LinkError {
    /// Whether the same request may succeed if sent again.
    pub fn retryable(&self) -> bool {
        match self {
            LinkError::Timeout { .. } | LinkError::Corrupt { .. } => true,
            LinkError::Refused { refusal, .. } => refusal.code.retryable(),
            LinkError::Unexpected { .. } | LinkError::Closed | LinkError::Io(_) => false,
        }
    }

    /// Whether the link itself is gone (reconnect), rather than one
    /// exchange failing.
    pub fn link_lost(&self) -> bool {
        matches!(self, LinkError::Closed | LinkError::Io(_))
    }
}

/// What the link has seen, for logs and for the fault-run counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a timeout or a corrupt reply.
    pub retries: u64,
    /// Attempts that got no reply in time.
    pub timeouts: u64,
    /// Replies that failed their check.
    pub corrupt_frames: u64,
    /// Replies for a request already given up on (late or duplicated):
    /// dropped, never matched to a later request.
    pub stale_replies: u64,
}

/// [`LinkStats`] summed over every link of one device (each reconnect
/// opens a new link), shared with whoever reports them (hiltd's metrics).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Requests sent, retries included.
    pub requests: AtomicU64,
    /// Requests sent again after a timeout or a corrupt reply.
    pub retries: AtomicU64,
    /// Attempts that got no reply in time.
    pub timeouts: AtomicU64,
    /// Replies that failed their check.
    pub corrupt_frames: AtomicU64,
    /// Late or duplicated replies, dropped.
    pub stale_replies: AtomicU64,
    /// Times the link was lost and the driver began reconnecting.
    pub reconnects: AtomicU64,
}

impl LinkCounters {
    /// The counts now.
    pub fn snapshot(&self) -> LinkStats {
        LinkStats {
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            corrupt_frames: self.corrupt_frames.load(Relaxed),
            stale_replies: self.stale_replies.load(Relaxed),
        }
    }
}

/// The host's end of one board connection.
#[derive(Debug)]
pub struct Link<S> {
    io: Framed<S, WireCodec>,
    next_seq: u32,
    opt: LinkOptions,
    counters: Arc<LinkCounters>,
    /// The shared counts when this link opened: its own are the rest.
    base: LinkStats,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// A link over `io` (a serial port, or a pipe in tests).
    pub fn new(io: S, opt: LinkOptions) -> Self {
        Link::counted(io, opt, Arc::default())
    }

    /// A link that also adds what it sees to `counters`.
    pub fn counted(io: S, opt: LinkOptions, counters: Arc<LinkCounters>) -> Self {
        Link {
            io: Framed::new(io, WireCodec::new()),
            next_seq: 1,
            opt,
            base: counters.snapshot(),
            counters,
        }
    }

    /// What this link has seen so far.
    pub fn stats(&self) -> LinkStats {
        let now = self.counters.snapshot();
        let b = self.base;
        LinkStats {
            requests: now.requests - b.requests,
            retries: now.retries - b.retries,
            timeouts: now.timeouts - b.timeouts,
            corrupt_frames: now.corrupt_frames - b.corrupt_frames,
            stale_replies: now.stale_replies - b.stale_replies,
        }
    }

    /// Its timing.
    pub fn options(&self) -> LinkOptions {
        self.opt
    }

    /// Seq 0 is what a board uses when it cannot trust a request's seq.
    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.checked_add(1).unwrap_or(1);
        s
    }

    /// Ends whatever partial frame the board holds (a lone delimiter is an
    /// empty frame, ignored) and drops anything already waiting here.
    pub async fn resync(&mut self) -> Result<(), LinkError> {
        use tokio::io::AsyncWriteExt;
        self.io
            .get_mut()
            .write_all(&[0])
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        self.flush_stale().await
    }

    /// Discards input until the line is quiet.
    async fn flush_stale(&mut self) -> Result<(), LinkError> {
        loop {
            match tokio::time::timeout(self.opt.quiet, self.io.next()).await {
                Err(_elapsed) => return Ok(()),
                Ok(None) => return Err(LinkError::Closed),
                Ok(Some(Err(e))) => return Err(LinkError::Io(e.to_string())),
                Ok(Some(Ok(Ok(_)))) => {
                    self.counters.stale_replies.fetch_add(1, Relaxed);
                }
                Ok(Some(Ok(Err(_)))) => {
                    self.counters.corrupt_frames.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// One attempt: send under a fresh seq, wait for its reply.
    pub async fn exchange(&mut self, request: &Message) -> Result<Message, LinkError> {
        self.exchange_within(request, self.opt.timeout).await
    }

    /// Waits for input nobody asked for, which is only ever stale: returns
    /// when the port fails (so an idle driver notices an unplug at once).
    /// Cancel-safe: nothing is lost when another branch of a `select!` wins.
    pub async fn idle(&mut self) -> LinkError {
        loop {
            match self.io.next().await {
                None => return LinkError::Closed,
                Some(Err(e)) => return LinkError::Io(e.to_string()),
                Some(Ok(Ok(_))) => {
                    self.counters.stale_replies.fetch_add(1, Relaxed);
                }
                Some(Ok(Err(_))) => {
                    self.counters.corrupt_frames.fetch_add(1, Relaxed);
                }
            }
        }
    }

    async fn exchange_within(
        &mut self,
        request: &Message,
        timeout: Duration,
    ) -> Result<Message, LinkError> {
        let seq = self.take_seq();
        let want = request.reply_kind().unwrap_or(Message::ERROR);
        self.counters.requests.fetch_add(1, Relaxed);
        self.io
            .send(Frame::new(seq, request.clone()))
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        // A timeout past what an Instant can hold waits a century instead.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        loop {
            let item = match tokio::time::timeout_at(deadline, self.io.next()).await {
                Err(_elapsed) => {
                    self.counters.timeouts.fetch_add(1, Relaxed);
                    return Err(LinkError::Timeout { seq, timeout });
                }
                Ok(None) => return Err(LinkError::Closed),
                Ok(Some(Err(e))) => return Err(LinkError::Io(e.to_string())),
                Ok(Some(Ok(item))) => item,
            };
            match item {
                Ok(f) if f.seq == seq => {
                    return match f.message {
                        Message::Error(refusal) => Err(LinkError::Refused { seq, refusal }),
                        m if m.kind() == want => Ok(m),
                        m => Err(LinkError::Unexpected {
                            seq,
                            want,
                            got: m.kind(),
                        }),
                    };
                }
                // The board could not read our request (it answers BadFrame
                // under seq 0): this attempt is lost.
                Ok(Frame {
                    seq: 0,
                    message: Message::Error(refusal),
                    ..
                }) if refusal.code == ErrorCode::BadFrame => {
                    return Err(LinkError::Refused { seq, refusal });
                }
                Ok(_) => {
                    self.counters.stale_replies.fetch_add(1, Relaxed);
                }
                // A corrupt frame may be our reply: nothing in it can be
                // trusted, so the attempt has failed.
                Err(error) => {
                    self.counters.corrupt_frames.fetch_add(1, Relaxed);
                    return Err(LinkError::Corrupt { seq, error });
                }
            }
        }
    }

    /// A request with the fault handling of `docs/wire-protocol.md`: after a
    /// failed attempt the stale input is flushed; idempotent requests are
    /// sent again (under a new seq) while the failure is retryable.
    pub async fn call(&mut self, request: &Message) -> Result<Message, LinkError> {
        self.call_within(request, self.opt.timeout).await
    }

    /// `call` with a longer reply timeout, for requests whose answer takes
    /// measuring time (Acquire).
    pub async fn call_within(
        &mut self,
        request: &Message,
        timeout: Duration,
    ) -> Result<Message, LinkError> {
        let attempts = if request.idempotent() {
            self.opt.attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            match self.exchange_within(request, timeout).await {
                Ok(m) => return Ok(m),
                Err(e) if e.link_lost() => return Err(e),
                Err(e) => {
                    self.flush_stale().await?;
                    if !e.retryable() || attempt >= attempts {
                        return Err(e);
                    }
                    attempt += 1;
                    self.counters.retries.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
