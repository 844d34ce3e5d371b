//! Per-device status and its change feed for `WatchDevice`.

use std::sync::Mutex;
use std::time::SystemTime;

use hilt_core::{DeviceState, DeviceStatus, FirmwareIdentity};
use tokio::sync::{broadcast, watch};

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
    /// Whether the device can measure and keep what it measures, changed
    /// only when that changes: the health service follows this, not every
    /// event, so a batch's Busy and Ready wake nobody who is not watching.
    /// It holds the latest value, so an outage over before the health task
    /// runs shows only its end, as a client's poll of the health would.
    serving: watch::Sender<bool>,
}

/// Whether a device in status `s` can measure and keep what it measures:
/// its health service's SERVING.
pub fn serving(s: &DeviceStatus) -> bool {
    matches!(s.state, DeviceState::Ready | DeviceState::Busy) && s.recording_error.is_none()
}

impl StatusHub {
    /// A hub starting from `initial` (a simulator is ready at once, a
    /// serial rig starts connecting).
    pub fn new(initial: DeviceStatus) -> Self {
        let (tx, _) = broadcast::channel(256);
        let (serving, _) = watch::channel(self::serving(&initial));
        StatusHub {
            current: Mutex::new(initial),
            tx,
            serving,
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

    /// Follows `serving` of the status, marked changed only when it changes.
    pub fn watch_serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }

    /// Apply `f`; broadcast only if the status really changed.
    pub fn update(&self, kind: EventKind, f: impl FnOnce(&mut DeviceStatus)) {
        let mut s = self.lock();
        // Nobody watching: no copy to compare against, no event. One who
        // subscribes meanwhile takes the snapshot after this lock.
        if self.tx.receiver_count() == 0 {
            f(&mut s);
        } else {
            let before = s.clone();
            f(&mut s);
            if *s != before {
                let _ = self.tx.send(Event {
                    kind,
                    status: s.clone(),
                    time: SystemTime::now(),
                });
            }
        }
        let now = serving(&s);
        self.serving
            .send_if_modified(|v| std::mem::replace(v, now) != now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceStatus> {
        // A poisoned status is still a valid status: every update leaves it
        // consistent before anything can panic.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's Busy and Ready leave the health watch untouched (nobody
    /// woken); a fault or a failed recording marks it, and so does the
    /// way back. Watchers of every event still see every change.
    #[test]
    fn serving_changes_only_when_measuring_becomes_possible_or_not() {
        let hub = StatusHub::ready("cal".into(), FirmwareIdentity::default());
        let mut serving = hub.watch_serving();
        assert!(*serving.borrow_and_update());
        let mut events = hub.subscribe();
        for state in [DeviceState::Busy, DeviceState::Ready] {
            hub.update(EventKind::StateChanged, |s| s.state = state);
            assert!(
                !serving.has_changed().unwrap(),
                "{state:?} marked the watch"
            );
            assert_eq!(events.try_recv().unwrap().status.state, state);
        }
        hub.update(EventKind::StateChanged, |s| s.state = DeviceState::Faulted);
        assert!(serving.has_changed().unwrap());
        assert!(!*serving.borrow_and_update());
        hub.update(EventKind::StateChanged, |s| s.state = DeviceState::Ready);
        assert!(*serving.borrow_and_update());
        hub.update(EventKind::StateChanged, |s| {
            s.recording_error = Some("disk full".into())
        });
        assert!(!*serving.borrow_and_update());
        // Nobody subscribed to events: the status still changes.
        drop(events);
        hub.update(EventKind::StateChanged, |s| s.recording_error = None);
        assert!(*serving.borrow_and_update());
        assert!(hub.snapshot().recording_error.is_none());
    }
}
