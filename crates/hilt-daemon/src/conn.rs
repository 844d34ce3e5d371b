//! Accepted connections, bounded. Each open socket costs a file
//! descriptor, and a process has about a thousand: past
//! `server.max_connections` a new connection is closed at once (logged),
//! and a connection that has not sent the HTTP/2 preface (or, with TLS,
//! its first bytes) within [`PREFACE_TIMEOUT`] is closed, so silent
//! sockets cannot lock every client out.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How long a new connection may take to send its first 24 bytes.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 client preface's length: a peer that sent this much is
/// speaking (TLS handshakes are longer still and have their own timeout).
const PREFACE_BYTES: usize = 24;

/// A connection that holds one of the daemon's connection slots until it
/// closes.
#[derive(Debug)]
pub struct Guarded {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the preface has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.read += buf.filled().len() - before;
            if self.read >= PREFACE_BYTES {
                self.deadline = None;
            }
            return r;
        }
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no HTTP/2 preface within {} s", PREFACE_TIMEOUT.as_secs()),
            )));
        }
        r
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// `incoming`'s connections, at most `max` open at once.
pub fn bounded(
    incoming: TcpIncoming,
    max: usize,
) -> impl Stream<Item = io::Result<Guarded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max));
    let refusals = Arc::new(Mutex::new(Refusals::default()));
    incoming.filter_map(move |accepted| {
        let out = match accepted {
            Err(e) => Some(Err(e)),
            Ok(io) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => Some(Ok(Guarded {
                    io,
                    _slot: slot,
                    deadline: Some(Box::pin(tokio::time::sleep(PREFACE_TIMEOUT))),
                    read: 0,
                })),
                Err(_) => {
                    let peer = io.peer_addr().ok();
                    drop(io);
                    refusals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .refused(max, peer);
                    None
                }
            },
        };
        futures::future::ready(out)
    })
}

/// Refused connections, logged at most once a second: a flood of them
/// must not become a flood of log lines.
#[derive(Debug, Default)]
struct Refusals {
    last_logged: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn refused(&mut self, max: usize, peer: Option<std::net::SocketAddr>) {
        self.since += 1;
        if self
            .last_logged
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        tracing::warn!(
            %peer, refused = self.since, max_connections = max,
            "connection closed at once: {max} connections are open (server.max_connections)"
        );
        self.last_logged = Some(Instant::now());
        self.since = 0;
    }
}
