//! Per-device status and its change feed for `WatchDevice`.

use std::sync::Mutex;
use std::time::SystemTime;

use hilt_core::DeviceState;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: DeviceState,
    pub calibration_id: String,
    pub leased: bool,
    pub waiters: u32,
    pub batches_done: u64,
    pub samples_done: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    StateChanged,
    LeaseChanged,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub status: Status,
    pub time: SystemTime,
}

/// Current status plus a broadcast of every change. Updates take the lock
/// and send under it, so subscribers see changes in the order they
/// happened and a snapshot taken after subscribing is never older than the
/// next event.
#[derive(Debug)]
pub struct StatusHub {
    current: Mutex<Status>,
    tx: broadcast::Sender<Event>,
}

impl StatusHub {
    pub fn new(calibration_id: String) -> Self {
        let (tx, _) = broadcast::channel(256);
        StatusHub {
            current: Mutex::new(Status {
                state: DeviceState::Ready,
                calibration_id,
                leased: false,
                waiters: 0,
                batches_done: 0,
                samples_done: 0,
                detail: String::new(),
            }),
            tx,
        }
    }

    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Apply `f`; broadcast only if the status really changed.
    pub fn update(&self, kind: EventKind, f: impl FnOnce(&mut Status)) {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        // A poisoned status is still a valid status: every update leaves it
        // consistent before anything can panic.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}
