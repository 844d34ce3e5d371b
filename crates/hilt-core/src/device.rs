use std::future::Future;

use crate::{DeviceSpec, Error, Measurement, ValidBatch};

/// One capability, one trait (as probe-rs' `DebugProbe`): a rig that turns
/// validated batches into measurements. The simulated rigs and the serial
/// drivers implement the same trait, so the daemon cannot tell them apart.
///
/// `execute` takes `&mut self`: a physical rig measures one sample at a
/// time, and the daemon gives each device exactly one owner task.
pub trait Device: Send + 'static {
    /// Complete, including the hard limits the daemon enforces for it.
    fn spec(&self) -> &DeviceSpec;

    /// Measure every row `repeats` times, sweeping the whole batch once per
    /// repeat, and answer in row order with the applied values. The batch
    /// is the device's to keep: the simulator applies it in the batch's own
    /// arrays and answers with them, a serial driver sends it to its port's task
    /// without a copy.
    fn execute(
        &mut self,
        batch: ValidBatch,
    ) -> impl Future<Output = Result<Measurement, Error>> + Send;

    /// Whether the device publishes its own state changes (a serial driver
    /// knows when it is connecting, busy or reconnecting); if not, the
    /// daemon marks it busy around each batch and takes its state from
    /// [`Device::fault`] after it.
    fn reports_own_state(&self) -> bool {
        false
    }

    /// Put the actuators in their safe state (drive off) until the next
    /// batch: sent when an admin halts the daemon, after the batch in
    /// flight. A simulator has nothing to make safe.
    fn make_safe(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(Ok(()))
    }

    /// Whether dropping an `execute` future part-way leaves the device
    /// able to measure the next batch. If so, the daemon stops a batch
    /// whose caller has gone (deadline, disconnect) instead of holding the
    /// rig for an answer nobody reads. A serial board mid-exchange is not:
    /// its wire protocol has no abort, so its batches run to the end.
    fn cancel_safe(&self) -> bool {
        false
    }

    /// Why the device cannot measure any more, if it cannot (a simulator
    /// that lost its model to a panic): the daemon then shows it `Faulted`
    /// with this reason instead of `Ready`.
    fn fault(&self) -> Option<String> {
        None
    }
}
