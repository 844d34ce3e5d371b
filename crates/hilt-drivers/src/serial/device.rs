use hilt_core::{
    Backend, Device, DeviceSpec, DeviceState, Error as CoreError, FirmwareIdentity, Measurement,
    ValidBatch,
};
use hilt_physics::PhysicalModel;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::link::LinkCounters;
use super::port::{Connector, SerialPort};
use super::settings::SerialSettings;
use super::state::{LinkState, StateObserver};
use super::task::{Job, Session};
use crate::Error;
use crate::spec::{DeviceSettings, build_spec};
use std::sync::Arc;

/// A rig behind an interface board on a serial port. A background task
/// owns the port: it connects, configures, keeps the link alive with
/// heartbeats and reconnects after a loss; `execute` hands it batches.
pub struct SerialDevice {
    spec: DeviceSpec,
    jobs: mpsc::Sender<Job>,
    state: watch::Receiver<LinkState>,
    task: JoinHandle<()>,
    counters: Arc<LinkCounters>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice")
            .field("id", &self.spec.id)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl SerialDevice {
    /// A rig on the serial port `serial.port` names.
    pub fn open<M: PhysicalModel>(
        model: &M,
        settings: DeviceSettings,
        serial: SerialSettings,
        observer: StateObserver,
    ) -> Result<Self, Error> {
        let port = SerialPort::of(&serial);
        SerialDevice::new(model, settings, serial, port, observer)
    }

    /// `model` is the host's copy of the rig's physics configuration: it
    /// gives the spec (sizes, ranges, grid, hyperparameters) the board is
    /// then checked against on every connect; who measures (firmware,
    /// calibration id) is the board's to say when it answers. Must be
    /// called inside a Tokio runtime; connecting starts at once, in the
    /// background.
    pub fn new<M: PhysicalModel, C: Connector>(
        model: &M,
        settings: DeviceSettings,
        serial: SerialSettings,
        connector: C,
        observer: StateObserver,
    ) -> Result<Self, Error> {
        let mut spec = build_spec(model, &settings, Backend::Serial)?;
        // The host's model is not the rig: its variant says nothing of it.
        spec.hyperparameters.remove("variant");
        let initial = LinkState {
            state: DeviceState::Connecting,
            detail: format!("opening {}", connector.describe()),
            calibration_id: String::new(),
            firmware: FirmwareIdentity::default(),
        };
        let (state_tx, state) = watch::channel(initial);
        let (jobs, rx) = mpsc::channel(1);
        let counters = Arc::<LinkCounters>::default();
        let session = Session::new(
            spec.clone(),
            serial,
            connector,
            state_tx,
            observer,
            Arc::clone(&counters),
        );
        let task = tokio::spawn(session.run(rx));
        Ok(SerialDevice {
            spec,
            jobs,
            state,
            task,
            counters,
        })
    }

    /// Retries, timeouts, corrupt frames and reconnects over every link
    /// this device has opened, updated as they happen.
    pub fn link_counters(&self) -> Arc<LinkCounters> {
        Arc::clone(&self.counters)
    }

    /// The driver's state now.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }
}

impl Drop for SerialDevice {
    /// The port is closed with the device, not whenever the task notices.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device for SerialDevice {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    async fn make_safe(&mut self) -> Result<(), CoreError> {
        let (reply, rx) = oneshot::channel();
        let gone = || CoreError::Unavailable(format!("{}: driver task ended", self.spec.id));
        self.jobs
            .send(Job::Safe { reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    fn reports_own_state(&self) -> bool {
        true
    }

    async fn execute(&mut self, batch: ValidBatch) -> Result<Measurement, CoreError> {
        // Not connected: say so now rather than queue behind a reconnect
        // whose end nobody knows. Busy is connected: the batch queues
        // behind the one measuring (the driver flips Busy/Ready around
        // each batch, and a pipelined client's next batch arrives in
        // between).
        {
            let s = self.state.borrow();
            if !matches!(s.state, DeviceState::Ready | DeviceState::Busy) {
                return Err(CoreError::Unavailable(format!(
                    "{}: {:?}: {}",
                    self.spec.id, s.state, s.detail
                )));
            }
        }
        let (reply, rx) = oneshot::channel();
        let gone = || CoreError::Unavailable(format!("{}: driver task ended", self.spec.id));
        self.jobs
            .send(Job::Measure { batch, reply })
            .await
            .map_err(|_| gone())?;
        let mut m = rx.await.map_err(|_| gone())??;
        m.device_id.clone_from(&self.spec.id);
        if let Some(enc) = &self.spec.encoding {
            m.flag_clipped_controls(enc);
        }
        Ok(m)
    }
}
