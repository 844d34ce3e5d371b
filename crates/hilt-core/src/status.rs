//! What a device is doing now, and the changes watchers are told of.
//! Shared by the daemon (which keeps it), the wire conversion and the
//! client (which hands it to trainers), so all three mean the same thing.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::FirmwareIdentity;

/// Lifecycle of a device as watchers see it. A simulator is `Ready` or
/// `Busy`, and `Faulted` for good after an internal failure; a serial rig
/// also passes through `Connecting` and `Reconnecting` by its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Opening the link and checking the board, before the first batch.
    Connecting,
    /// Idle and able to measure.
    Ready,
    /// Measuring a batch.
    Busy,
    /// Cannot measure; `DeviceStatus::detail` says why.
    Faulted,
    /// The link was lost and is being re-established with backoff.
    Reconnecting,
}

/// A device's current status: what `DescribeDevice` returns beside the
/// spec and every `WatchDevice` event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The device's state.
    pub state: DeviceState,
    /// Says what measures: a serial rig's is `serial-<rig>-<board
    /// serial>-<config hash>`, a simulator's `sim-<kind>-<variant>-<seed>`
    /// (its physics table is in `hyperparameters`). A twin fitted under
    /// another id may be stale.
    pub calibration_id: String,
    /// Who is measuring: for a real rig the connected board's identity,
    /// which is only known once it has answered.
    pub firmware: FirmwareIdentity,
    /// Whether someone holds the lease (never the lease id: that is a
    /// secret).
    pub leased: bool,
    /// Clients queued for the lease.
    pub waiters: u32,
    /// Batches measured since the daemon started.
    pub batches_done: u64,
    /// Samples (rows × repeats) measured since the daemon started.
    pub samples_done: u64,
    /// Human-readable reason for the state (the board's identity, the
    /// fault).
    pub detail: String,
    /// Set while an admin has halted the daemon (`halted by <name>:
    /// <reason>`): the device refuses new batches whatever its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// Set while the device's recording cannot be written.
    pub recording_error: Option<String>,
}

impl DeviceStatus {
    /// A device that is ready and has measured nothing yet.
    pub fn ready(calibration_id: String, firmware: FirmwareIdentity) -> Self {
        DeviceStatus {
            state: DeviceState::Ready,
            calibration_id,
            firmware,
            leased: false,
            waiters: 0,
            batches_done: 0,
            samples_done: 0,
            detail: String::new(),
            halted: None,
            recording_error: None,
        }
    }
}

/// Why a watcher is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The first event of every watch: the status as it is now.
    Snapshot,
    /// The device's state, detail or identity changed.
    StateChanged,
    /// The lease was taken, released, expired, or its queue changed.
    LeaseChanged,
    /// The watcher fell behind and missed this many events; the status is
    /// current again.
    Resync {
        /// Events dropped.
        missed: u64,
    },
}

/// One change of a device's status.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// The device it happened to.
    pub device_id: String,
    /// What changed.
    pub kind: EventKind,
    /// The status after the change.
    pub status: DeviceStatus,
    /// When the daemon saw it.
    pub time: SystemTime,
}

/// The daemon itself: what build serves, since when, and what measures
/// behind each device.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// hiltd's version.
    pub version: String,
    /// The git revision hiltd was built from.
    pub git_revision: String,
    /// When hiltd started.
    pub started: SystemTime,
    /// Device id and the identity of what measures it.
    pub devices: Vec<(String, FirmwareIdentity)>,
}
