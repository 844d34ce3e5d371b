//! Accepted connections, bounded. Each open socket costs a file
//! descriptor, and a process has about a thousand: past
//! `server.max_connections` a new connection is closed at once (logged),
//! and a connection that has made no gRPC call within
//! [`FIRST_CALL_TIMEOUT`] is closed, so silent sockets cannot lock every
//! client out. The deadline ends at the first call, not at the first
//! bytes: with TLS, a peer that finishes the handshake and then says
//! nothing would otherwise hold its slot for ever (HTTP/2 keepalive
//! pings begin only after HTTP/2's own handshake).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How long a new connection may take to make its first call.
pub const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What each request on a connection carries (tonic puts it in the
/// request's extensions; with TLS inside `TlsConnectInfo`): the peer, and
/// the flag the gate sets at the connection's first call.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub tcp: TcpConnectInfo,
    called: Arc<AtomicBool>,
}

impl ConnInfo {
    /// Mark the connection as one that speaks gRPC.
    pub fn called(&self) {
        self.called.store(true, Ordering::Relaxed);
    }

    /// The connection `req` came on, plaintext or TLS.
    pub fn of<T>(req: &tonic::Request<T>) -> Option<&ConnInfo> {
        let ext = req.extensions();
        ext.get::<ConnInfo>().or_else(|| {
            ext.get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                .map(|t| t.get_ref())
        })
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.tcp.remote_addr()
    }
}

/// A connection that holds one of the daemon's connection slots until it
/// closes.
#[derive(Debug)]
pub struct Guarded {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first call.
    deadline: Option<Pin<Box<Sleep>>>,
    called: Arc<AtomicBool>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.deadline.is_some() && self.called.load(Ordering::Relaxed) {
            self.deadline = None;
        }
        // A connection waits for its peer in a read: the deadline is
        // polled (and its wake-up registered) with it.
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no gRPC call within {} s of connecting",
                    FIRST_CALL_TIMEOUT.as_secs()
                ),
            )));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
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
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.io.connect_info(),
            called: Arc::clone(&self.called),
        }
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
                    deadline: Some(Box::pin(tokio::time::sleep(FIRST_CALL_TIMEOUT))),
                    called: Arc::default(),
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
