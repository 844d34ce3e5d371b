//! One task owns each device; batches reach it through a bounded queue, so
//! two batches are never interleaved on the hardware.

use hilt_core::{Device, DeviceState, Error as CoreError, Measurement, ValidBatch};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::status::{EventKind, StatusHub};

type Reply = oneshot::Sender<Result<Measurement, CoreError>>;

#[derive(Debug)]
struct Job {
    batch: ValidBatch,
    reply: Reply,
}

/// Cheap to clone; the actor stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ActorHandle {
    tx: mpsc::Sender<Job>,
}

/// A batch accepted into the device queue; await it for the measurement.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Measurement, CoreError>>);

impl Pending {
    pub async fn wait(self) -> Result<Measurement, Error> {
        match self.0.await {
            Ok(r) => r.map_err(Error::from),
            // The actor ended with the job queued: only at shutdown.
            Err(_) => Err(Error::ShuttingDown),
        }
    }
}

impl ActorHandle {
    /// Queue a batch (waiting while the queue is full) and return at once,
    /// so a streaming client keeps the device fed.
    pub async fn submit(&self, batch: ValidBatch) -> Result<Pending, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { batch, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(Pending(rx))
    }
}

pub fn spawn<D: Device>(
    mut device: D,
    depth: usize,
    status: Arc<StatusHub>,
) -> (ActorHandle, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(depth);
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            // The caller gave up (deadline, disconnect): do not spend
            // hardware time on an answer nobody will read.
            if job.reply.is_closed() {
                continue;
            }
            // A device that reports its own state (a serial driver) is
            // busy, faulted or reconnecting by its own account.
            let own = device.reports_own_state();
            if !own {
                status.update(EventKind::StateChanged, |s| s.state = DeviceState::Busy);
            }
            let samples = job.batch.rows() as u64 * u64::from(job.batch.repeats());
            let result = device.execute(&job.batch).await;
            let ok = result.is_ok();
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
            let _ = job.reply.send(result);
        }
        tracing::debug!("device actor stopped");
    });
    (ActorHandle { tx }, task)
}
