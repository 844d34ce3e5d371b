//! One task owns each device; batches reach it through a bounded queue, so
//! two batches are never interleaved on the hardware.

use hilt_core::{Device, DeviceState, Error as CoreError, Measurement, ValidBatch};
use hilt_proto::v1;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::halt::Halt;
use crate::lease::InUse;
use crate::metrics::DeviceMetrics;
use crate::recording::{DeviceRecording, Keeping, Who};
use crate::status::{EventKind, StatusHub};

/// A measurement, and its record on the way to the disk when the device
/// is recorded.
type Measured = (Arc<Measurement>, Option<Keeping>);
type Reply = oneshot::Sender<Result<Measured, CoreError>>;

// Nearly every job is a batch; boxing it to shrink the rare Safe would
// cost an allocation per batch for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Job {
    Measure {
        batch: ValidBatch,
        reply: Reply,
        /// For the batch's record.
        who: Who,
        /// The lease stays in use (its TTL cannot run out) until the
        /// device is done with the batch, whether or not its caller waits.
        in_use: InUse,
    },
    /// After what is queued: the actuators to their safe state (halt).
    Safe(oneshot::Sender<Result<(), CoreError>>),
}

/// Cheap to clone; the actor stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ActorHandle {
    tx: mpsc::Sender<Job>,
}

/// A batch accepted into the device queue; await its answer.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Measured, CoreError>>);

impl Pending {
    /// The measurement as the wire answer, released only once its record
    /// is written: the answer is encoded while the writer writes.
    pub async fn answer(self) -> Result<v1::Measurement, Error> {
        let (m, keeping) = match self.0.await {
            Ok(r) => r?,
            // The actor ended with the job queued: only at shutdown.
            Err(_) => return Err(Error::ShuttingDown),
        };
        let answer = v1::Measurement::from(&m);
        if let Some(k) = keeping {
            k.done().await?;
        }
        Ok(answer)
    }
}

impl ActorHandle {
    /// Batches queued and not yet taken by the device.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queue a batch (waiting while the queue is full) and return at once,
    /// so a streaming client keeps the device fed.
    pub async fn submit(
        &self,
        batch: ValidBatch,
        who: Who,
        in_use: InUse,
    ) -> Result<Pending, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Measure {
                batch,
                reply,
                who,
                in_use,
            })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(Pending(rx))
    }

    /// Put the device in its safe state once the batches queued before
    /// this have been measured.
    pub async fn make_safe(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Safe(reply))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await
            .map_err(|_| Error::ShuttingDown)?
            .map_err(Error::from)
    }
}

pub fn spawn<D: Device>(
    mut device: D,
    depth: usize,
    status: Arc<StatusHub>,
    metrics: DeviceMetrics,
    halt: Arc<Halt>,
    recording: Option<Arc<DeviceRecording>>,
    stop: CancellationToken,
) -> (ActorHandle, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(depth);
    let task = tokio::spawn(async move {
        // At shutdown the queue closes: what is queued is still measured
        // and answered, nothing new gets in, and the actor ends even if a
        // connection nobody closes still holds a handle.
        let mut closing = false;
        // One waiter on the token for the task's life, not one added and
        // removed (under the token's lock) at every batch.
        let cancelled = stop.cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            let next = if closing {
                rx.recv().await
            } else {
                tokio::select! {
                    j = rx.recv() => j,
                    () = &mut cancelled => {
                        rx.close();
                        closing = true;
                        continue;
                    }
                }
            };
            // `in_use` lives until the device is done with the batch (or
            // to the end of this turn if it never gets it).
            let (batch, mut reply, who, in_use) = match next {
                None => break,
                Some(Job::Safe(reply)) => {
                    let _ = reply.send(device.make_safe().await);
                    continue;
                }
                Some(Job::Measure {
                    batch,
                    reply,
                    who,
                    in_use,
                }) => (batch, reply, who, in_use),
            };
            // The caller gave up (deadline, disconnect): do not spend
            // hardware time on an answer nobody will read.
            if reply.is_closed() {
                continue;
            }
            // Queued before the halt, or validated while it came: the rig
            // is not driven after a halt, whenever the batch got in.
            if let Some(why) = halt.get() {
                let _ = reply.send(Err(CoreError::Unavailable(why)));
                continue;
            }
            // Queued before the recording failed: not measured either.
            if let Some(Err(e)) = recording.as_ref().map(|r| r.check()) {
                let _ = reply.send(Err(e));
                continue;
            }
            // A device that reports its own state (a serial driver) is
            // busy, faulted or reconnecting by its own account.
            let own = device.reports_own_state();
            if !own {
                status.update(EventKind::StateChanged, |s| s.state = DeviceState::Busy);
            }
            // The device takes the batch; what is said of it afterwards
            // is taken now.
            let (rows, repeats) = (batch.rows(), batch.repeats());
            let samples = rows as u64 * u64::from(repeats);
            let started = std::time::Instant::now();
            // A device that can stop part-way stops when its caller goes.
            let result = if device.cancel_safe() {
                tokio::select! {
                    r = device.execute(batch) => Some(r),
                    () = reply.closed() => None,
                }
            } else {
                Some(device.execute(batch).await)
            };
            let busy = started.elapsed().as_secs_f64();
            // Before the answer: freeing the lease may wake its expiry
            // task (when parked), and the task woken last runs first on
            // this thread, which should be the caller's (the other way
            // round, 256 × 64 calls took ~20 µs longer). A simulator left
            // by its caller may still finish its current repeat on the
            // pool; its next batch waits for that.
            drop(in_use);
            let Some(result) = result else {
                tracing::info!(
                    device = %device.spec().id, rows, repeats,
                    after_s = busy,
                    "caller gone: batch given up (a simulator stops at its next repeat and holds no emulated pace); nothing of it was answered or counted"
                );
                if !own {
                    status.update(EventKind::StateChanged, |s| s.state = DeviceState::Ready);
                }
                continue;
            };
            let ok = result.is_ok();
            if ok {
                metrics.measured(samples, busy);
            }
            // A simulator that lost its model is faulted for good and says
            // why; anything else is ready for the next batch.
            let fault = if own { None } else { Some(device.fault()) };
            status.update(EventKind::StateChanged, |s| {
                match fault {
                    None => {}
                    Some(None) => s.state = DeviceState::Ready,
                    Some(Some(why)) => {
                        s.state = DeviceState::Faulted;
                        s.detail = why;
                    }
                }
                if ok {
                    s.batches_done += 1;
                    s.samples_done += samples;
                }
            });
            // Kept before it is answered: the answer (encoded meanwhile)
            // waits for the record's write, in the kernel, so an
            // acknowledged measurement survives hiltd being killed the
            // next instant.
            match (result, &recording) {
                (Ok(m), Some(r)) => {
                    let m = Arc::new(m);
                    r.keep(Arc::clone(&m), repeats, &who, |keeping| {
                        let _ = reply.send(Ok((m, Some(keeping))));
                    });
                }
                (result, _) => {
                    let _ = reply.send(result.map(|m| (Arc::new(m), None)));
                }
            }
        }
        tracing::debug!("device actor stopped");
    });
    (ActorHandle { tx }, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hilt_core::{Batch, DeviceSpec, FirmwareIdentity, validate};

    use super::*;
    use crate::lease::Leases;

    const TTL: Duration = Duration::from_secs(10);

    /// A held lease of a fresh device and one batch's use of it.
    async fn lease(status: &Arc<StatusHub>) -> (Arc<Leases>, String, InUse) {
        let leases = Leases::new("dev".into(), Arc::clone(status), 1);
        let id = leases.acquire(TTL, None, "test".into()).await.unwrap().id;
        let in_use = leases.begin_use(&id).unwrap();
        (leases, id, in_use)
    }

    /// A rig that cannot stop part-way (a serial board) and measures until
    /// it is let go.
    struct Holds {
        spec: DeviceSpec,
        go: Arc<tokio::sync::Notify>,
    }

    impl Device for Holds {
        fn spec(&self) -> &DeviceSpec {
            &self.spec
        }

        async fn execute(&mut self, _: ValidBatch) -> Result<Measurement, CoreError> {
            self.go.notified().await;
            Err(CoreError::Internal("let go".into()))
        }
    }

    /// A device that breaks on its second batch and stays broken.
    struct Breaks {
        spec: DeviceSpec,
        batches: u32,
    }

    impl Device for Breaks {
        fn spec(&self) -> &DeviceSpec {
            &self.spec
        }

        async fn execute(&mut self, _: ValidBatch) -> Result<Measurement, CoreError> {
            self.batches += 1;
            Err(CoreError::Internal("simulator task failed".into()))
        }

        fn fault(&self) -> Option<String> {
            (self.batches > 0).then(|| "lost its model".to_string())
        }
    }

    fn spec() -> DeviceSpec {
        use hilt_physics::{LoopbackConfig, LoopbackModel};
        let model = LoopbackModel::new(&LoopbackConfig { n_in: 1, n_par: 0 }).unwrap();
        let settings = hilt_drivers::DeviceSettings {
            id: "dev".into(),
            input_limits: None,
            param_limits: None,
            policy: hilt_core::LimitPolicy::Reject,
            max_batch: 4,
            max_repeats: 1,
        };
        let dev =
            hilt_drivers::SimDevice::new(model, settings, hilt_drivers::SimSettings::default())
                .unwrap();
        dev.spec().clone()
    }

    #[tokio::test]
    async fn a_device_that_broke_is_shown_faulted_with_its_reason() {
        let spec = spec();
        let status = Arc::new(StatusHub::ready("cal".into(), FirmwareIdentity::default()));
        let batch = validate(&spec, Batch::shared(ndarray::array![[0.5]], &[])).unwrap();
        let stop = CancellationToken::new();
        let metrics = crate::metrics::Metrics::new().device("dev");
        let (actor, _task) = spawn(
            Breaks { spec, batches: 0 },
            2,
            Arc::clone(&status),
            metrics,
            Arc::default(),
            None,
            stop,
        );
        let (_leases, _, in_use) = lease(&status).await;
        let err = actor
            .submit(batch, Who::default(), in_use)
            .await
            .unwrap()
            .answer()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("simulator task failed"), "{err}");
        let s = status.snapshot();
        assert_eq!(s.state, DeviceState::Faulted);
        assert_eq!(s.detail, "lost its model");
        assert_eq!(s.batches_done, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_stays_in_use_while_its_batch_measures_though_the_caller_left() {
        let spec = spec();
        let status = Arc::new(StatusHub::ready("cal".into(), FirmwareIdentity::default()));
        let batch = validate(&spec, Batch::shared(ndarray::array![[0.5]], &[])).unwrap();
        let go = Arc::new(tokio::sync::Notify::new());
        let (actor, task) = spawn(
            Holds {
                spec,
                go: Arc::clone(&go),
            },
            2,
            Arc::clone(&status),
            crate::metrics::Metrics::new().device("dev"),
            Arc::default(),
            None,
            CancellationToken::new(),
        );
        let (leases, id, in_use) = lease(&status).await;
        let pending = actor.submit(batch, Who::default(), in_use).await.unwrap();
        // The device has the batch; its caller gives up.
        for _ in 0..100 {
            if status.snapshot().state == DeviceState::Busy {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(status.snapshot().state, DeviceState::Busy);
        drop(pending);
        tokio::time::advance(3 * TTL).await;
        // Still in use: the TTL has not run out under the rig.
        drop(
            leases
                .begin_use(&id)
                .expect("the lease outlives its TTL while measuring"),
        );
        go.notify_one();
        drop(actor);
        task.await.unwrap();
        // Done: the lease can expire again.
        tokio::time::advance(3 * TTL).await;
        let err = leases.begin_use(&id).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }
}
