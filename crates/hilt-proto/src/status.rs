//! Device status, watch events and server info ⇄ `hilt.v1`: the one place
//! where a `DeviceState` gets its wire number, for daemon and client alike.

use hilt_core::{DeviceEvent, DeviceState, DeviceStatus, EventKind, FirmwareIdentity, ServerInfo};

use crate::convert::wall;
use crate::error::ConvertError;
use crate::v1;

impl From<DeviceState> for v1::DeviceState {
    fn from(s: DeviceState) -> Self {
        match s {
            DeviceState::Connecting => v1::DeviceState::Connecting,
            DeviceState::Ready => v1::DeviceState::Ready,
            DeviceState::Busy => v1::DeviceState::Busy,
            DeviceState::Faulted => v1::DeviceState::Faulted,
            DeviceState::Reconnecting => v1::DeviceState::Reconnecting,
        }
    }
}

fn state_from(v: i32) -> Result<DeviceState, ConvertError> {
    Ok(match v1::DeviceState::try_from(v) {
        Ok(v1::DeviceState::Connecting) => DeviceState::Connecting,
        Ok(v1::DeviceState::Ready) => DeviceState::Ready,
        Ok(v1::DeviceState::Busy) => DeviceState::Busy,
        Ok(v1::DeviceState::Faulted) => DeviceState::Faulted,
        Ok(v1::DeviceState::Reconnecting) => DeviceState::Reconnecting,
        _ => {
            return Err(ConvertError::new(
                "status.state",
                format!("unknown value {v}"),
            ));
        }
    })
}

impl From<&v1::FirmwareIdentity> for FirmwareIdentity {
    fn from(f: &v1::FirmwareIdentity) -> Self {
        FirmwareIdentity {
            model: f.model.clone(),
            serial_number: f.serial_number.clone(),
            version: f.version.clone(),
        }
    }
}

/// The wire form of `device_id`'s status.
pub fn status_to_proto(device_id: &str, s: &DeviceStatus) -> v1::DeviceStatus {
    v1::DeviceStatus {
        device_id: device_id.to_string(),
        state: v1::DeviceState::from(s.state) as i32,
        calibration_id: s.calibration_id.clone(),
        leased: s.leased,
        waiters: s.waiters,
        batches_done: s.batches_done,
        samples_done: s.samples_done,
        detail: s.detail.clone(),
        firmware: Some((&s.firmware).into()),
        halted: s.halted.clone().unwrap_or_default(),
        recording_error: s.recording_error.clone().unwrap_or_default(),
    }
}

impl TryFrom<&v1::DeviceStatus> for DeviceStatus {
    type Error = ConvertError;

    fn try_from(s: &v1::DeviceStatus) -> Result<Self, ConvertError> {
        Ok(DeviceStatus {
            state: state_from(s.state)?,
            calibration_id: s.calibration_id.clone(),
            firmware: s.firmware.as_ref().map(Into::into).unwrap_or_default(),
            leased: s.leased,
            waiters: s.waiters,
            batches_done: s.batches_done,
            samples_done: s.samples_done,
            detail: s.detail.clone(),
            halted: (!s.halted.is_empty()).then(|| s.halted.clone()),
            recording_error: (!s.recording_error.is_empty()).then(|| s.recording_error.clone()),
        })
    }
}

impl From<&DeviceEvent> for v1::DeviceEvent {
    fn from(e: &DeviceEvent) -> Self {
        let (kind, missed) = match e.kind {
            EventKind::Snapshot => (v1::EventKind::Snapshot, 0),
            EventKind::StateChanged => (v1::EventKind::StateChanged, 0),
            EventKind::LeaseChanged => (v1::EventKind::LeaseChanged, 0),
            EventKind::Resync { missed } => (v1::EventKind::Resync, missed),
        };
        v1::DeviceEvent {
            kind: kind as i32,
            status: Some(status_to_proto(&e.device_id, &e.status)),
            time: Some(e.time.into()),
            missed,
        }
    }
}

impl TryFrom<&v1::DeviceEvent> for DeviceEvent {
    type Error = ConvertError;

    fn try_from(e: &v1::DeviceEvent) -> Result<Self, ConvertError> {
        let kind = match v1::EventKind::try_from(e.kind) {
            Ok(v1::EventKind::Snapshot) => EventKind::Snapshot,
            // A calibration change is a change of the device's identity,
            // which is what a state change already carries.
            Ok(v1::EventKind::StateChanged | v1::EventKind::CalibrationChanged) => {
                EventKind::StateChanged
            }
            Ok(v1::EventKind::LeaseChanged) => EventKind::LeaseChanged,
            Ok(v1::EventKind::Resync) => EventKind::Resync { missed: e.missed },
            _ => {
                return Err(ConvertError::new(
                    "kind",
                    format!("unknown value {}", e.kind),
                ));
            }
        };
        let status = e
            .status
            .as_ref()
            .ok_or_else(|| ConvertError::new("status", "missing"))?;
        Ok(DeviceEvent {
            device_id: status.device_id.clone(),
            kind,
            status: DeviceStatus::try_from(status)?,
            time: wall("time", &e.time)?,
        })
    }
}

impl From<&ServerInfo> for v1::ServerInfo {
    fn from(s: &ServerInfo) -> Self {
        v1::ServerInfo {
            version: s.version.clone(),
            git_revision: s.git_revision.clone(),
            started: Some(s.started.into()),
            devices: s
                .devices
                .iter()
                .map(|(id, fw)| v1::DeviceFirmware {
                    device_id: id.clone(),
                    firmware: Some(fw.into()),
                })
                .collect(),
        }
    }
}

impl TryFrom<&v1::ServerInfo> for ServerInfo {
    type Error = ConvertError;

    fn try_from(s: &v1::ServerInfo) -> Result<Self, ConvertError> {
        Ok(ServerInfo {
            version: s.version.clone(),
            git_revision: s.git_revision.clone(),
            started: wall("started", &s.started)?,
            devices: s
                .devices
                .iter()
                .map(|d| {
                    (
                        d.device_id.clone(),
                        d.firmware.as_ref().map(Into::into).unwrap_or_default(),
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn status_and_events_survive_the_wire() {
        let mut s = DeviceStatus::ready("cal-1".into(), FirmwareIdentity::default());
        s.state = DeviceState::Reconnecting;
        s.firmware.serial_number = "FW-9".into();
        s.waiters = 2;
        let e = DeviceEvent {
            device_id: "shg0".into(),
            kind: EventKind::Resync { missed: 4 },
            status: s,
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7),
        };
        let wire = v1::DeviceEvent::from(&e);
        assert_eq!(DeviceEvent::try_from(&wire), Ok(e));
    }

    #[test]
    fn an_unknown_state_is_an_error_naming_the_field() {
        let mut wire = status_to_proto(
            "a",
            &DeviceStatus::ready(String::new(), FirmwareIdentity::default()),
        );
        wire.state = 6;
        let err = DeviceStatus::try_from(&wire).unwrap_err();
        assert_eq!(err.field, "status.state");
    }
}
