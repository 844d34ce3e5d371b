//! The hilt.v1.Hilt gRPC service: thin handlers that decode, check the
//! lease, validate against the device's limits, and hand the batch to the
//! device's actor. Nothing here knows physics or training.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use hilt_core::{Batch, validate};
use hilt_proto::v1::{self, hilt_server::Hilt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::ServerConfig;
use crate::lease::{InUse, LeaseInfo};
use crate::registry::{DeviceEntry, Registry};
use crate::status::{self, EventKind};
use crate::{Error, stream};

pub(crate) struct Shared {
    pub registry: Registry,
    pub server: ServerConfig,
    pub started: SystemTime,
    /// Cancelled at shutdown: ends watches and stops streams reading.
    pub stop: CancellationToken,
}

#[derive(Clone)]
pub struct HiltService {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for HiltService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiltService").finish_non_exhaustive()
    }
}

pub(crate) fn status_to_proto(device_id: &str, s: &status::Status) -> v1::DeviceStatus {
    use hilt_core::DeviceState as S;
    let state = match s.state {
        S::Connecting => v1::DeviceState::Connecting,
        S::Ready => v1::DeviceState::Ready,
        S::Busy => v1::DeviceState::Busy,
        S::Faulted => v1::DeviceState::Faulted,
        S::Reconnecting => v1::DeviceState::Reconnecting,
        S::Offline => v1::DeviceState::Offline,
    };
    v1::DeviceStatus {
        device_id: device_id.to_string(),
        state: state as i32,
        calibration_id: s.calibration_id.clone(),
        leased: s.leased,
        waiters: s.waiters,
        batches_done: s.batches_done,
        samples_done: s.samples_done,
        detail: s.detail.clone(),
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
    Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
}

impl Shared {
    /// Mark `lease_id` in use on `dev`, explaining a lease of another device.
    pub fn use_lease(&self, dev: &DeviceEntry, lease_id: &str) -> Result<InUse, Error> {
        dev.leases.begin_use(lease_id).map_err(|e| {
            match self
                .registry
                .iter()
                .find(|o| o.spec.id != dev.spec.id && o.leases.knows(lease_id))
            {
                Some(o) => Error::Lease(format!(
                    "lease '{lease_id}' is for device '{}', not '{}'",
                    o.spec.id, dev.spec.id
                )),
                None => e,
            }
        })
    }

    /// Decode, validate and queue one batch; the lease stays in use until
    /// the returned guard drops.
    pub async fn submit(
        &self,
        dev: &DeviceEntry,
        lease_id: &str,
        batch: Option<&v1::Batch>,
    ) -> Result<(crate::actor::Pending, InUse), Error> {
        let in_use = self.use_lease(dev, lease_id)?;
        let batch = batch.ok_or(Error::InvalidArgument {
            field: "batch",
            reason: "missing".into(),
        })?;
        let valid = validate(&dev.spec, Batch::try_from(batch)?)?;
        Ok((dev.actor.submit(valid).await?, in_use))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Hilt for HiltService {
    async fn get_server_info(
        &self,
        _: Request<v1::GetServerInfoRequest>,
    ) -> Result<Response<v1::ServerInfo>, Status> {
        let s = &self.shared;
        Ok(Response::new(v1::ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: env!("HILT_GIT_REVISION").to_string(),
            started: Some(s.started.into()),
            devices: s
                .registry
                .iter()
                .map(|d| v1::DeviceFirmware {
                    device_id: d.spec.id.clone(),
                    firmware: Some((&d.spec.firmware).into()),
                })
                .collect(),
        }))
    }

    async fn list_devices(
        &self,
        _: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let devices = self
            .shared
            .registry
            .iter()
            .map(|d| d.spec.as_ref().into())
            .collect();
        Ok(Response::new(v1::ListDevicesResponse { devices }))
    }

    async fn describe_device(
        &self,
        req: Request<v1::DescribeDeviceRequest>,
    ) -> Result<Response<v1::DeviceDescription>, Status> {
        let dev = self.shared.registry.get(&req.get_ref().device_id)?;
        Ok(Response::new(v1::DeviceDescription {
            spec: Some(dev.spec.as_ref().into()),
            status: Some(status_to_proto(&dev.spec.id, &dev.status.snapshot())),
        }))
    }

    async fn acquire_lease(
        &self,
        req: Request<v1::AcquireLeaseRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        let r = req.into_inner();
        let s = &self.shared;
        let dev = s.registry.get(&r.device_id)?;
        let ttl = seconds("ttl_seconds", r.ttl_seconds)?
            .unwrap_or(Duration::from_secs_f64(s.server.lease_ttl_s));
        if ttl.as_secs_f64() > s.server.max_lease_ttl_s {
            return Err(Error::InvalidArgument {
                field: "ttl_seconds",
                reason: format!(
                    "{} exceeds the server maximum of {} s",
                    r.ttl_seconds, s.server.max_lease_ttl_s
                ),
            }
            .into());
        }
        let wait = seconds("wait_seconds", r.wait_seconds)?;
        tokio::select! {
            got = dev.leases.acquire(ttl, wait) => {
                let lease = got?;
                tracing::info!(device = %dev.spec.id, lease = %lease.id, "lease granted");
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
        tracing::info!(device = %dev.spec.id, lease = %id, "lease released");
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
        let event =
            move |kind: v1::EventKind, s: &status::Status, time: SystemTime, missed: u64| {
                Ok(v1::DeviceEvent {
                    kind: kind as i32,
                    status: Some(status_to_proto(&id, s)),
                    time: Some(time.into()),
                    missed,
                })
            };
        tokio::spawn(async move {
            let first = event(
                v1::EventKind::Snapshot,
                &dev.status.snapshot(),
                SystemTime::now(),
                0,
            );
            if tx.send(first).await.is_err() {
                return;
            }
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tx.closed() => break,
                    r = rx.recv() => match r {
                        Ok(e) => {
                            let kind = match e.kind {
                                EventKind::StateChanged => v1::EventKind::StateChanged,
                                EventKind::LeaseChanged => v1::EventKind::LeaseChanged,
                            };
                            event(kind, &e.status, e.time, 0)
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            event(v1::EventKind::Resync, &dev.status.snapshot(), SystemTime::now(), n)
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
