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

use crate::auth::{Role, authorize};
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

/// How long `Halt` waits for the devices' safe state before answering.
const HALT_WAIT: Duration = Duration::from_secs(5);

/// The shortest lease granted: shorter ones would expire on the way.
const MIN_LEASE_TTL: Duration = Duration::from_millis(10);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Hilt for HiltService {
    async fn get_server_info(
        &self,
        req: Request<v1::GetServerInfoRequest>,
    ) -> Result<Response<v1::ServerInfo>, Status> {
        authorize(&req, "GetServerInfo", Role::Observer, None)?;
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
        req: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        authorize(&req, "ListDevices", Role::Observer, None)?;
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
        authorize(&req, "DescribeDevice", Role::Observer, None)?;
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
        let caller = authorize(
            &req,
            "AcquireLease",
            Role::Operator,
            Some(&req.get_ref().device_id),
        )?;
        let deadline = crate::deadline::of(&req);
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
        let asked = seconds("wait_seconds", r.wait_seconds)?;
        // Wait no longer than the caller listens, less the answer's way
        // back: a grant it never hears of would hold the device for nobody.
        let wait = match (asked, crate::deadline::budget(deadline)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let got = tokio::select! {
            got = dev.leases.acquire(ttl, wait, caller.name.clone()) => got,
            _ = s.stop.cancelled() => Err(Error::ShuttingDown),
        };
        // Never the lease id: it is the holder's secret.
        match &got {
            Ok(_) => tracing::info!(target: "hilt::audit", event = "lease.acquire",
                device = %dev.spec.id, token = %caller.name, peer = %caller.peer(),
                ttl_s = ttl.as_secs_f64(), outcome = "granted", "lease granted"),
            Err(e) => tracing::info!(target: "hilt::audit", event = "lease.acquire",
                device = %dev.spec.id, token = %caller.name, peer = %caller.peer(),
                outcome = %e, "lease not granted"),
        }
        if let Err(e) = &got {
            dev.metrics.failed(e.code());
        }
        Ok(Response::new(lease_to_proto(got?)))
    }

    async fn keep_alive(
        &self,
        req: Request<v1::KeepAliveRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        let id = &req.get_ref().lease_id;
        let dev = self.shared.registry.lease_owner(id)?;
        authorize(&req, "KeepAlive", Role::Operator, Some(&dev.spec.id))?;
        Ok(Response::new(lease_to_proto(dev.leases.keep_alive(id)?)))
    }

    async fn release_lease(
        &self,
        req: Request<v1::ReleaseLeaseRequest>,
    ) -> Result<Response<v1::ReleaseLeaseResponse>, Status> {
        let id = &req.get_ref().lease_id;
        let dev = self.shared.registry.lease_owner(id)?;
        let caller = authorize(&req, "ReleaseLease", Role::Operator, Some(&dev.spec.id))?;
        dev.leases.release(id)?;
        tracing::info!(target: "hilt::audit", event = "lease.release", device = %dev.spec.id,
            token = %caller.name, peer = %caller.peer(), outcome = "released", "lease released");
        Ok(Response::new(v1::ReleaseLeaseResponse {}))
    }

    async fn break_lease(
        &self,
        req: Request<v1::BreakLeaseRequest>,
    ) -> Result<Response<v1::BreakLeaseResponse>, Status> {
        let caller = authorize(&req, "BreakLease", Role::Admin, None)?;
        let r = req.into_inner();
        let dev = self.shared.registry.get(&r.device_id)?;
        let reason = crate::error::quote(&r.reason);
        let why = if reason.is_empty() {
            format!("was broken by {}", caller.name)
        } else {
            format!("was broken by {}: {reason}", caller.name)
        };
        let holder = dev.leases.break_holder(why);
        tracing::warn!(target: "hilt::audit", event = "lease.break", device = %dev.spec.id,
            token = %caller.name, peer = %caller.peer(),
            holder = holder.as_deref().unwrap_or("-"), %reason,
            outcome = if holder.is_some() { "broken" } else { "not held" }, "lease broken");
        Ok(Response::new(v1::BreakLeaseResponse {
            broken: holder.is_some(),
        }))
    }

    async fn halt(
        &self,
        req: Request<v1::HaltRequest>,
    ) -> Result<Response<v1::HaltResponse>, Status> {
        let caller = authorize(&req, "Halt", Role::Admin, None)?;
        let reason = crate::error::quote(&req.get_ref().reason);
        tracing::warn!(target: "hilt::audit", event = "halt", token = %caller.name,
            peer = %caller.peer(), %reason, "daemon halted: devices refuse new batches");
        let (safe, not_safe) = self.shared.halt(&caller.name, &reason, HALT_WAIT).await;
        Ok(Response::new(v1::HaltResponse { safe, not_safe }))
    }

    async fn resume(
        &self,
        req: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ResumeResponse>, Status> {
        let caller = authorize(&req, "Resume", Role::Admin, None)?;
        self.shared.resume();
        tracing::warn!(target: "hilt::audit", event = "resume", token = %caller.name,
            peer = %caller.peer(), "daemon resumed");
        Ok(Response::new(v1::ResumeResponse {}))
    }

    async fn execute(
        &self,
        req: Request<v1::ExecuteRequest>,
    ) -> Result<Response<v1::Measurement>, Status> {
        let caller = authorize(
            &req,
            "Execute",
            Role::Operator,
            Some(&req.get_ref().device_id),
        )?;
        let started = std::time::Instant::now();
        let budget = crate::deadline::budget(crate::deadline::of(&req));
        let r = req.into_inner();
        let dev = self.shared.registry.get(&r.device_id)?;
        let measured = async {
            let pending = self
                .shared
                .submit(dev, &caller, &r.lease_id, r.batch.as_ref())
                .await?;
            // Past the caller's deadline the answer says so (tonic's own
            // timeout would end the call CANCELLED); the device stops with
            // the batch once the caller is gone.
            match budget {
                None => pending.answer().await,
                Some(b) => tokio::time::timeout(b, pending.answer())
                    .await
                    .map_err(|_| Error::Deadline(b.as_secs_f64()))?,
            }
        };
        let m = dev.metrics.count(started, measured.await)?;
        Ok(Response::new(m))
    }

    type StreamStream = BoxStream<v1::StreamResponse>;

    async fn stream(
        &self,
        req: Request<Streaming<v1::StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = crate::auth::caller(&req)?;
        let out = stream::open(Arc::clone(&self.shared), caller, req.into_inner()).await?;
        Ok(Response::new(Box::pin(out)))
    }

    type ReadRecordingStream = BoxStream<v1::RecordedBatch>;

    async fn read_recording(
        &self,
        req: Request<v1::ReadRecordingRequest>,
    ) -> Result<Response<Self::ReadRecordingStream>, Status> {
        authorize(&req, "ReadRecording", Role::Observer, None)?;
        let r = req.into_inner();
        let dev = self.shared.registry.get(&r.device_id)?;
        let recording = dev.recording.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "device '{}' is not recorded: hiltd runs without [recording] (or --record-dir)",
                dev.spec.id
            ))
        })?;
        let ns = |field: &'static str, t: Option<prost_types::Timestamp>| {
            t.map(|t| {
                SystemTime::try_from(t)
                    .map(hilt_record::unix_ns)
                    .map_err(|e| Error::InvalidArgument {
                        field,
                        reason: e.to_string(),
                    })
            })
            .transpose()
        };
        let filter = crate::recording::Filter {
            since_ns: ns("since", r.since)?,
            until_ns: ns("until", r.until)?,
            lease_tag: (!r.lease_id.is_empty()).then(|| hilt_record::lease_tag(&r.lease_id)),
            from_seq: r.from_seq,
        };
        let (tx, mut rx) = mpsc::channel(16);
        // Segments are read on the blocking pool, one at a time; the
        // records are turned into answers here.
        tokio::task::spawn_blocking(move || recording.read(&filter, &tx));
        let (otx, orx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let msg = match r {
                    Err(e) => Err(Status::internal(format!("reading the recording: {e}"))),
                    Ok(rec) => match rec.measurement() {
                        None => continue,
                        Some(m) => Ok(v1::RecordedBatch {
                            seq: rec.seq,
                            measurement: Some((&m).into()),
                            repeats: rec.repeats,
                            token: rec.token,
                            peer: rec.peer,
                            lease_tag: rec.lease,
                            spec_hash: rec.spec_hash,
                            config_hash: rec.config_hash,
                            version: rec.version,
                            git_revision: rec.git_revision,
                        }),
                    },
                };
                let last = msg.is_err();
                if otx.send(msg).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(orx))))
    }

    type WatchDeviceStream = BoxStream<v1::DeviceEvent>;

    async fn watch_device(
        &self,
        req: Request<v1::WatchDeviceRequest>,
    ) -> Result<Response<Self::WatchDeviceStream>, Status> {
        authorize(&req, "WatchDevice", Role::Observer, None)?;
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
