use std::path::PathBuf;
use std::time::Duration;

use super::LinkOptions;
use crate::Error;

/// How to reach one board and keep the link healthy. Filled from the
/// daemon's `[device.serial]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    /// The board's port; in a lab, the stable `/dev/hilt-*` name the udev
    /// rule gives it, so a replug on another USB port is the same device.
    pub port: PathBuf,
    pub baud: u32,
    pub link: LinkOptions,
    /// An idle link is probed this often, so a dead board is noticed
    /// before a client's batch finds it.
    pub heartbeat: Duration,
    /// Reconnect attempts start this far apart and back off (doubling) to
    /// `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Board settings as dotted key → value text, applied (all or nothing)
    /// after every connect, so a board that lost power comes back as it
    /// was configured.
    pub configure: Vec<(String, String)>,
}

impl SerialSettings {
    /// Defaults for everything but the port.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        SerialSettings {
            port: port.into(),
            baud: 115_200,
            link: LinkOptions::default(),
            heartbeat: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_secs(1),
            configure: Vec::new(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |field: &str, reason: &str| {
            Err(Error::Config {
                field: format!("serial.{field}"),
                reason: reason.to_string(),
            })
        };
        if self.port.as_os_str().is_empty() {
            return bad("port", "required (e.g. /dev/hilt-shg)");
        }
        if self.baud == 0 {
            return bad("baud", "must be > 0");
        }
        if self.link.timeout.is_zero() {
            return bad("timeout_ms", "must be > 0");
        }
        if self.link.attempts == 0 {
            return bad("attempts", "must be >= 1");
        }
        if self.heartbeat.is_zero() {
            return bad("heartbeat_ms", "must be > 0");
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return bad(
                "reconnect_min_ms",
                "must be > 0 and at most reconnect_max_ms",
            );
        }
        Ok(())
    }
}
