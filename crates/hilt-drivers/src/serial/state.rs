//! The driver's state as the daemon sees it, in its own module so the
//! device and the task owning the port both use it without using each
//! other.

use std::sync::Arc;

use hilt_core::{DeviceState, FirmwareIdentity};

/// The driver's state as watchers see it: the state, a human-readable
/// reason, and the identity of what is connected (board serial number and
/// its configuration hash), which changes when the board does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Where the driver is in its connect / serve / reconnect cycle.
    pub state: DeviceState,
    /// Why: the board's identity when ready, the failure otherwise.
    pub detail: String,
    /// `serial-<rig>-<board serial>-<configuration hash>`: changes when
    /// another board, or the same board configured otherwise, measures.
    pub calibration_id: String,
    /// The connected board's own identity (empty until it has answered).
    pub firmware: FirmwareIdentity,
}

/// Told of every state change, in order (a watch channel would merge a
/// quick Reconnecting → Ready into one change, and a client watching for
/// the replug would never see it).
pub type StateObserver = Arc<dyn Fn(&LinkState) + Send + Sync>;
