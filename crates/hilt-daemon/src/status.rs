//! Per-device status and its change feed for `WatchDevice`.

use std::sync::Mutex;
use std::time::SystemTime;

use hilt_core::{DeviceStatus, FirmwareIdentity};
use tokio::sync::broadcast;

/// What changed; the wire adds the snapshot and resync events a watch
/// itself produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    StateChanged,
    LeaseChanged,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub status: DeviceStatus,
    pub time: SystemTime,
}

/// Current status plus a broadcast of every change. Updates take the lock
/// and send under it, so subscribers see changes in the order they
/// happened and a snapshot taken after subscribing is never older than the
/// next event.
#[derive(Debug)]
pub struct StatusHub {
    current: Mutex<DeviceStatus>,
    tx: broadcast::Sender<Event>,
}

impl StatusHub {
    /// A hub starting from `initial` (a simulator is ready at once, a
    /// serial rig starts connecting).
    pub fn new(initial: DeviceStatus) -> Self {
        let (tx, _) = broadcast::channel(256);
        StatusHub {
            current: Mutex::new(initial),
            tx,
        }
    }

    /// A device that is ready at once, measuring as `firmware` under
    /// `calibration_id`.
    pub fn ready(calibration_id: String, firmware: FirmwareIdentity) -> Self {
        StatusHub::new(DeviceStatus::ready(calibration_id, firmware))
    }

    pub fn snapshot(&self) -> DeviceStatus {
        self.lock().clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Apply `f`; broadcast only if the status really changed.
    pub fn update(&self, kind: EventKind, f: impl FnOnce(&mut DeviceStatus)) {
        let mut s = self.lock();
        let before = s.clone();
        f(&mut s);
        if *s != before {
            // No receivers is fine: nobody is watching.
            let _ = self.tx.send(Event {
                kind,
                status: s.clone(),
                time: SystemTime::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceStatus> {
        // A poisoned status is still a valid status: every update leaves it
        // consistent before anything can panic.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}
