//! Assemble and run the gRPC server: hilt.v1, standard health, reflection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hilt_proto::v1::hilt_server::HiltServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};

use crate::Error;
use crate::auth::Gate;
use crate::config::{Config, TlsFiles};
use crate::daemon::Daemon;
use crate::metrics::Metrics;
use crate::registry::{DeviceEntry, Registry};
use crate::service::HiltService;

/// The largest request or answer hiltd handles.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Concurrent calls one connection may have open (HTTP/2 streams).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Build the devices of `config`, then serve them on `listener` until
/// `shutdown` resolves (see [`Prepared::serve`]).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Prepared::build(config)?.serve(listener, shutdown).await
}

/// A daemon whose devices are all built (models, specs, actors; serial
/// boards already connecting) but which does not listen yet. Building
/// first is what lets `hiltd` refuse a config that cannot be served before
/// it says it listens.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    registry: Registry,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    tls: Option<ServerTlsConfig>,
    metrics: Arc<Metrics>,
    halt: Arc<crate::halt::Halt>,
    /// Bound in `build`, so a taken port stops hiltd before its ready line.
    metrics_listener: Option<std::net::TcpListener>,
}

impl Prepared {
    /// Build every device or none: a config with one bad device refuses
    /// to start rather than serving a partial lab.
    pub fn build(config: Config) -> Result<Self, Error> {
        let tls = config.server.tls.as_ref().map(server_tls).transpose()?;
        let metrics_listener = config
            .server
            .metrics_listen
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| {
                        Error::Config(format!(
                            "server.metrics_listen: cannot listen on {addr}: {e}"
                        ))
                    })
            })
            .transpose()?;
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let halt = Arc::default();
        let (registry, tasks) = Registry::build(&config, &metrics, &halt, &stop)?;
        Ok(Prepared {
            config,
            registry,
            tasks,
            stop,
            tls,
            metrics,
            halt,
            metrics_listener,
        })
    }

    /// Where `/metrics` is served, if anywhere (the port chosen when port
    /// 0 was asked for).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` resolves, then stop taking work, let the
    /// batches in flight finish and answer, and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Prepared {
            config,
            registry,
            tasks,
            stop,
            tls,
            metrics,
            halt,
            metrics_listener,
        } = self;
        for d in registry.iter() {
            tracing::info!(device = %d.spec.id, kind = %d.spec.kind, model = %d.spec.model,
            n_in = d.spec.n_in, n_par = d.spec.n_par, n_out = d.spec.n_out, "device ready");
        }
        let service = HiltService {
            shared: Arc::new(Daemon {
                registry,
                server: config.server.clone(),
                started: SystemTime::now(),
                stop: stop.clone(),
                halted: halt,
                metrics,
            }),
        };
        if let Some(l) = metrics_listener {
            let addr = l.local_addr()?;
            let l = TcpListener::from_std(l)?;
            let daemon = Arc::clone(&service.shared);
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(l, daemon, stop).await {
                    tracing::error!(%addr, "metrics endpoint failed: {e}");
                }
            });
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
        }
        // Every service behind the gate: with tokens configured, health and
        // reflection answer observers and up, not anyone.
        let gate = Gate::new(config.server.tokens.clone());

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<HiltServer<HiltService>>().await;
        // Per device too (service name = device id): the process serving says
        // nothing of a board that is unplugged.
        for d in service.shared.registry.iter() {
            tokio::spawn(device_health(d.clone(), health.clone(), stop.clone()));
        }
        // Both reflection versions: older grpcurl and tools speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(hilt_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| Error::Config(format!("reflection: {e}")))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| Error::Config(format!("reflection: {e}")))?;

        let on_shutdown = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing batches in flight");
                health.set_not_serving::<HiltServer<HiltService>>().await;
                stop.cancel();
            }
        };
        let grace = config.server.shutdown_grace;
        let max_connections = config.server.max_connections.get();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let server = builder
            // Dead peers (a trainer's laptop that slept) are found by ping.
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // A Stream or WatchDevice holds a task: bound them per connection.
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .layer(tower::util::MapResponseLayer::new(
                |mut r: http::Response<tonic::body::Body>| {
                    crate::codes::fix_headers(r.headers_mut());
                    r
                },
            ))
            .add_service(InterceptedService::new(health_service, gate.clone()))
            .add_service(InterceptedService::new(reflection_v1, gate.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, gate.clone()))
            // tonic's default 4 MiB refuses a full batch of a wide device: 4096
            // rows of a ten-copy plate readout (x + θ, 2 156 floats) are 35 MB.
            .add_service(InterceptedService::new(
                HiltServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                gate,
            ))
            // Small request/answer pairs are the normal traffic: without
            // TCP_NODELAY, Nagle + delayed ACK add ~40 ms to each round trip.
            .serve_with_incoming_shutdown(
                crate::conn::bounded(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    max_connections,
                ),
                on_shutdown,
            );
        // Graceful shutdown waits for every connection to close, and an idle
        // peer never closes its own: past the grace, what is still open is
        // closed. The actors still finish the batch they measure (below).
        let mut server = Box::pin(server);
        tokio::select! {
            r = &mut server => r?,
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "connections still open after the shutdown grace: closing them"
            ),
        }
        drop(server);
        // The service (and with it every actor handle) is gone: actors drain
        // what is queued and stop; expiry tasks stopped with the token.
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The TLS set-up of `[server.tls]`, checked now: a certificate that does
/// not load must stop hiltd before it says it listens.
fn server_tls(files: &TlsFiles) -> Result<ServerTlsConfig, Error> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "server.tls.{key}: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    let identity = Identity::from_pem(read("cert", &files.cert)?, read("key", &files.key)?);
    // A peer that opens a connection and never finishes the handshake is
    // dropped after this, not kept for ever.
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(Duration::from_secs(10));
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("client_ca", ca)?));
    }
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(|e| {
            let mut names = format!("{} and {}", files.cert.display(), files.key.display());
            if let Some(ca) = &files.client_ca {
                names += &format!(" (client CA {})", ca.display());
            }
            Error::Config(format!(
                "server.tls: cannot use {names}: {}",
                source_chain(&e)
            ))
        })?;
    Ok(tls)
}

/// An error and its causes, as one line.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out += &format!(": {c}");
        cur = c.source();
    }
    out
}

/// Keep `device`'s health service (named by its id) in step with its
/// state: SERVING while it can measure, NOT_SERVING while it connects,
/// reconnects, is faulted or its recording fails.
async fn device_health(
    device: DeviceEntry,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    use tonic_health::ServingStatus;
    let mut serving = device.status.watch_serving();
    loop {
        let now = if *serving.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(&device.spec.id, now).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = serving.changed() => if changed.is_err() { return },
        }
    }
}

/// hiltd running inside another program (`hilt demo`, tests, benches).
#[derive(Debug)]
pub struct EmbeddedDaemon {
    /// Where it listens (the port chosen when port 0 was asked for).
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl EmbeddedDaemon {
    /// Bind `addr` (port 0 for any free port) and serve in the background.
    pub async fn start(config: Config, addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(serve(
            config,
            listener,
            async move { signal.cancelled().await },
        ));
        Ok(EmbeddedDaemon { addr, stop, task })
    }

    /// The URL a client connects to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop as `hiltd` does on SIGTERM: batches in flight finish first.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| Error::Config(format!("daemon task failed: {e}")))?
    }
}
