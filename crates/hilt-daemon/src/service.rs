//! The hilt.v1.Hilt gRPC service: thin handlers that decode, check the
//! lease, validate against the device's limits, and hand the batch to the
//! device's actor. Nothing here knows physics or training.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use hilt_core::{DeviceEvent, EventKind, ServerInfo};
use hilt_proto::v1::{self, hilt_server::Hilt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::Daemon;
use crate::lease::LeaseInfo;
use crate::status;
use crate::{Error, stream};

#[derive(Clone)]
pub struct HiltService {
    pub(crate) shared: Arc<Daemon>,
}

impl std::fmt::Debug for HiltService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiltService").finish_non_exhaustive()
    }
}

fn lease_to_proto(l: LeaseInfo) -> v1::Lease {
    v1::Lease {
        lease_id: l.id,
        device_id: l.device_id,
        ttl_seconds: l.ttl.as_secs_f64(),
        expires: Some(l.expires.into()),
    }
}

fn seconds(field: &'static str, v: f64) -> Result<Option<Duration>, Error> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::InvalidArgument {
            field,
            reason: format!("{v} must be finite and >= 0"),
        });
    }
    if v == 0.0 {
        return Ok(None);
    }
    // Finite but too large for a duration (1e20 s) is refused, not a panic.
    Duration::try_from_secs_f64(v)
        .map(Some)
        .map_err(|_| Error::InvalidArgument {
            field,
            reason: format!("{v} s is longer than any duration this daemon can hold"),
        })
}

/// The shortest lease granted: shorter ones would expire on the way.
const MIN_LEASE_TTL: Duration = Duration::from_millis(10);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Hilt for HiltService {
    async fn get_server_info(
        &self,
        _: Request<v1::GetServerInfoRequest>,
    ) -> Result<Response<v1::ServerInfo>, Status> {
        let s = &self.shared;
        let info = ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: env!("HILT_GIT_REVISION").to_string(),
            started: s.started,
            devices: s
                .registry
                .iter()
                .map(|d| (d.spec.id.clone(), d.status.snapshot().firmware))
                .collect(),
        };
        Ok(Response::new((&info).into()))
    }

    async fn list_devices(
        &self,
        _: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let devices = self
            .shared
            .registry
            .iter()
            .map(|d| (&d.live_spec()).into())
            .collect();
        Ok(Response::new(v1::ListDevicesResponse { devices }))
    }

    async fn describe_device(
        &self,
        req: Request<v1::DescribeDeviceRequest>,
    ) -> Result<Response<v1::DeviceDescription>, Status> {
        let dev = self.shared.registry.get(&req.get_ref().device_id)?;
        Ok(Response::new(v1::DeviceDescription {
            spec: Some((&dev.live_spec()).into()),
            status: Some(hilt_proto::status_to_proto(
                &dev.spec.id,
                &dev.status.snapshot(),
            )),
        }))
    }

    async fn acquire_lease(
        &self,
        req: Request<v1::AcquireLeaseRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        let r = req.into_inner();
        let s = &self.shared;
        let dev = s.registry.get(&r.device_id)?;
        let ttl = seconds("ttl_seconds", r.ttl_seconds)?.unwrap_or(s.server.lease_ttl);
        if ttl < MIN_LEASE_TTL {
            return Err(Error::InvalidArgument {
                field: "ttl_seconds",
                reason: format!(
                    "{} is below the minimum of {} s: the lease would expire before its \
                     answer arrived",
                    r.ttl_seconds,
                    MIN_LEASE_TTL.as_secs_f64()
                ),
            }
            .into());
        }
        if ttl > s.server.max_lease_ttl {
            return Err(Error::InvalidArgument {
                field: "ttl_seconds",
                reason: format!(
                    "{} exceeds the server maximum of {} s",
                    r.ttl_seconds,
                    s.server.max_lease_ttl.as_secs_f64()
                ),
            }
            .into());
        }
        let wait = seconds("wait_seconds", r.wait_seconds)?;
        tokio::select! {
            got = dev.leases.acquire(ttl, wait) => {
                let lease = got?;
                // Never the lease id: it is the holder's secret.
                tracing::info!(device = %dev.spec.id, "lease granted");
                Ok(Response::new(lease_to_proto(lease)))
            }
            _ = s.stop.cancelled() => Err(Error::ShuttingDown.into()),
        }
    }

    async fn keep_alive(
        &self,
        req: Request<v1::KeepAliveRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        let id = &req.get_ref().lease_id;
        let dev = self.shared.registry.lease_owner(id)?;
        Ok(Response::new(lease_to_proto(dev.leases.keep_alive(id)?)))
    }

    async fn release_lease(
        &self,
        req: Request<v1::ReleaseLeaseRequest>,
    ) -> Result<Response<v1::ReleaseLeaseResponse>, Status> {
        let id = &req.get_ref().lease_id;
        let dev = self.shared.registry.lease_owner(id)?;
        dev.leases.release(id)?;
        tracing::info!(device = %dev.spec.id, "lease released");
        Ok(Response::new(v1::ReleaseLeaseResponse {}))
    }

    async fn execute(
        &self,
        req: Request<v1::ExecuteRequest>,
    ) -> Result<Response<v1::Measurement>, Status> {
        let r = req.into_inner();
        let dev = self.shared.registry.get(&r.device_id)?;
        let (pending, _in_use) = self
            .shared
            .submit(dev, &r.lease_id, r.batch.as_ref())
            .await?;
        let m = pending.wait().await?;
        Ok(Response::new((&m).into()))
    }

    type StreamStream = BoxStream<v1::StreamResponse>;

    async fn stream(
        &self,
        req: Request<Streaming<v1::StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let out = stream::open(Arc::clone(&self.shared), req.into_inner()).await?;
        Ok(Response::new(Box::pin(out)))
    }

    type WatchDeviceStream = BoxStream<v1::DeviceEvent>;

    async fn watch_device(
        &self,
        req: Request<v1::WatchDeviceRequest>,
    ) -> Result<Response<Self::WatchDeviceStream>, Status> {
        let dev = self.shared.registry.get(&req.get_ref().device_id)?.clone();
        let stop = self.shared.stop.clone();
        // Subscribe before the snapshot: no change can fall between them.
        let mut rx = dev.status.subscribe();
        let (tx, out) = mpsc::channel(64);
        let id = dev.spec.id.clone();
        let event = move |kind: EventKind, status: hilt_core::DeviceStatus, time: SystemTime| {
            Ok(v1::DeviceEvent::from(&DeviceEvent {
                device_id: id.clone(),
                kind,
                status,
                time,
            }))
        };
        tokio::spawn(async move {
            let first = event(
                EventKind::Snapshot,
                dev.status.snapshot(),
                SystemTime::now(),
            );
            if tx.send(first).await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => Err(Status::from(Error::ShuttingDown)),
                    _ = tx.closed() => break,
                    r = rx.recv() => match r {
                        Ok(e) => {
                            let kind = match e.kind {
                                status::EventKind::StateChanged => EventKind::StateChanged,
                                status::EventKind::LeaseChanged => EventKind::LeaseChanged,
                            };
                            event(kind, e.status, e.time)
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => event(
                            EventKind::Resync { missed },
                            dev.status.snapshot(),
                            SystemTime::now(),
                        ),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                let last = msg.is_err();
                if tx.send(msg).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
