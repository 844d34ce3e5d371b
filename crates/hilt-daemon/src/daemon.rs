//! What every RPC handler shares, and the one path a batch takes into a
//! device: the lease marked in use, the wire batch decoded, validated
//! against the device's limits, queued on its actor. `Execute` and
//! `Stream` both go through [`Daemon::submit`], so neither can skip a step.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hilt_core::{Batch, validate};
use hilt_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::actor::Pending;
use crate::auth::Caller;
use crate::config::ServerConfig;
use crate::halt::Halt;
use crate::lease::InUse;
use crate::metrics::Metrics;
use crate::recording::Who;
use crate::registry::{DeviceEntry, Registry};

/// The daemon's state behind the gRPC service.
pub(crate) struct Daemon {
    pub registry: Registry,
    pub server: ServerConfig,
    pub started: SystemTime,
    /// Cancelled at shutdown: ends watches and stops streams reading.
    pub stop: CancellationToken,
    /// Set while an admin has halted the daemon (the actors read it too).
    pub halted: Arc<Halt>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
}

impl Daemon {
    /// Mark `lease_id` in use on `dev`, explaining a lease of another device.
    pub fn use_lease(&self, dev: &DeviceEntry, lease_id: &str) -> Result<InUse, Error> {
        dev.leases.begin_use(lease_id).map_err(|e| {
            match self
                .registry
                .iter()
                .find(|o| o.spec.id != dev.spec.id && o.leases.knows(lease_id))
            {
                Some(o) => Error::Lease(format!(
                    "lease '{}' is for device '{}', not '{}'",
                    crate::error::quote(lease_id),
                    o.spec.id,
                    dev.spec.id
                )),
                None => e,
            }
        })
    }

    fn halted_by(&self) -> Option<String> {
        self.halted.get()
    }

    pub fn is_halted(&self) -> bool {
        self.halted_by().is_some()
    }

    /// Refuse new batches on every device until [`Daemon::resume`];
    /// watchers see `halted` on each device's status. Then every device
    /// goes to its safe state after the batches already queued; this
    /// answers which are safe within `wait` and which not (yet).
    pub async fn halt(&self, by: &str, reason: &str, wait: Duration) -> (Vec<String>, Vec<String>) {
        let why = if reason.is_empty() {
            format!("halted by {by}")
        } else {
            format!("halted by {by}: {reason}")
        };
        self.halted.set(Some(why.clone()));
        let mut pending = Vec::new();
        for d in self.registry.iter() {
            d.status
                .update(crate::status::EventKind::StateChanged, |s| {
                    s.halted = Some(why.clone());
                });
            // A task per device, so one that is slow to finish its batch
            // still goes safe after this call has answered.
            let d = d.clone();
            pending.push(tokio::spawn(async move {
                let r = d.actor.make_safe().await;
                match &r {
                    Ok(()) => tracing::info!(target: "hilt::audit", event = "safe",
                        device = %d.spec.id, outcome = "safe", "device in its safe state"),
                    Err(e) => tracing::warn!(target: "hilt::audit", event = "safe",
                        device = %d.spec.id, outcome = %e, "device not made safe"),
                }
                (d.spec.id.clone(), r)
            }));
        }
        let (mut safe, mut not_safe) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + wait;
        for (task, d) in pending.into_iter().zip(self.registry.iter()) {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok((id, Ok(())))) => safe.push(id),
                Ok(Ok((id, Err(e)))) => not_safe.push(format!("{id}: {e}")),
                Ok(Err(e)) => not_safe.push(format!("{}: {e}", d.spec.id)),
                Err(_) => not_safe.push(format!(
                    "{}: still measuring; goes safe after its batch",
                    d.spec.id
                )),
            }
        }
        (safe, not_safe)
    }

    /// Take work again after a halt.
    pub fn resume(&self) {
        self.halted.set(None);
        for d in self.registry.iter() {
            d.status
                .update(crate::status::EventKind::StateChanged, |s| s.halted = None);
        }
    }

    /// Decode, validate, pass the interlock and queue one batch; the lease
    /// stays in use until the device is done with it (the actor holds the
    /// guard), even if the caller stops waiting.
    pub async fn submit(
        &self,
        dev: &DeviceEntry,
        caller: &Caller,
        lease_id: &str,
        batch: Option<&v1::Batch>,
    ) -> Result<Pending, Error> {
        if let Some(why) = self.halted_by() {
            return Err(Error::Halted(why));
        }
        // Never measure what cannot be kept.
        if let Some(r) = &dev.recording {
            r.check()?;
        }
        let in_use = self.use_lease(dev, lease_id)?;
        let batch = batch.ok_or(Error::InvalidArgument {
            field: "batch",
            reason: "missing".into(),
        })?;
        let valid = validate(&dev.spec, Batch::try_from(batch)?)?;
        dev.interlock.admit(&valid).inspect_err(|e| {
            dev.metrics.interlock_refused();
            tracing::warn!(device = %dev.spec.id, "batch refused: {e}");
        })?;
        let clamped = valid.clamped().iter().filter(|c| **c).count();
        dev.metrics.clamped(clamped as u64);
        let who = Who {
            lease: lease_id.to_string(),
            token: caller.name.to_string(),
            peer: caller.peer(),
        };
        dev.actor.submit(valid, who, in_use).await
    }
}
