use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::LinkOptions;

/// How to reach one board and keep the link healthy: the daemon's
/// `[device.serial]` table, read straight into this type. Every value
/// that could not work (no port, zero baud, zero timeouts, a backoff that
/// shrinks) is refused while the config is read, naming the key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSerialSettings")]
pub struct SerialSettings {
    /// The board's port; in a lab, the stable `/dev/hilt-*` name the udev
    /// rule gives it, so a replug on another USB port is the same device.
    pub port: PathBuf,
    /// Line speed of the port.
    pub baud: u32,
    /// The request/reply discipline's timing.
    pub link: LinkOptions,
    /// An idle link is probed this often, so a dead board is noticed
    /// before a client's batch finds it.
    pub heartbeat: Duration,
    /// Reconnect attempts start this far apart and back off (doubling) to
    /// `reconnect_max`.
    pub reconnect_min: Duration,
    /// The longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// Board settings as dotted key → value text, applied (all or nothing)
    /// after every connect, so a board that lost power comes back as it
    /// was configured. The daemon fills it from the device's physics table.
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
}

/// `[device.serial]` as written: durations in milliseconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSerialSettings {
    port: PathBuf,
    baud: u32,
    timeout_ms: u64,
    quiet_ms: u64,
    attempts: u32,
    heartbeat_ms: u64,
    reconnect_min_ms: u64,
    reconnect_max_ms: u64,
}

impl Default for RawSerialSettings {
    fn default() -> Self {
        let d = SerialSettings::new("");
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        RawSerialSettings {
            port: d.port,
            baud: d.baud,
            timeout_ms: ms(d.link.timeout),
            quiet_ms: ms(d.link.quiet),
            attempts: d.link.attempts,
            heartbeat_ms: ms(d.heartbeat),
            reconnect_min_ms: ms(d.reconnect_min),
            reconnect_max_ms: ms(d.reconnect_max),
        }
    }
}

impl TryFrom<RawSerialSettings> for SerialSettings {
    type Error = String;

    fn try_from(r: RawSerialSettings) -> Result<Self, String> {
        let bad = |field: &str, reason: &str| Err(format!("serial.{field}: {reason}"));
        if r.port.as_os_str().is_empty() {
            return bad("port", "required (e.g. /dev/hilt-shg)");
        }
        if r.baud == 0 {
            return bad("baud", "must be > 0");
        }
        if r.timeout_ms == 0 {
            return bad("timeout_ms", "must be > 0");
        }
        if r.attempts == 0 {
            return bad("attempts", "must be >= 1");
        }
        if r.heartbeat_ms == 0 {
            return bad("heartbeat_ms", "must be > 0");
        }
        if r.reconnect_min_ms == 0 || r.reconnect_max_ms < r.reconnect_min_ms {
            return bad(
                "reconnect_min_ms",
                "must be > 0 and at most reconnect_max_ms",
            );
        }
        Ok(SerialSettings {
            port: r.port,
            baud: r.baud,
            link: LinkOptions {
                timeout: Duration::from_millis(r.timeout_ms),
                quiet: Duration::from_millis(r.quiet_ms),
                attempts: r.attempts,
            },
            heartbeat: Duration::from_millis(r.heartbeat_ms),
            reconnect_min: Duration::from_millis(r.reconnect_min_ms),
            reconnect_max: Duration::from_millis(r.reconnect_max_ms),
            configure: Vec::new(),
        })
    }
}

/// A physics table (as JSON) as Configure entries: dotted keys; strings
/// as they are, everything else as JSON text (what
/// `docs/wire-protocol.md` specifies).
pub fn configuration_entries(physics: &serde_json::Value) -> Vec<(String, String)> {
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    if !physics.is_null() {
        flatten("", physics, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SerialSettings, String> {
        SerialSettings::deserialize(serde_json::from_str::<serde_json::Value>(text).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn milliseconds_become_durations_and_defaults_fill_the_rest() {
        let s = parse(r#"{"port": "/dev/x", "timeout_ms": 50}"#).unwrap();
        assert_eq!(s.link.timeout, Duration::from_millis(50));
        assert_eq!(s.baud, 115_200);
        assert_eq!(s.reconnect_max, Duration::from_secs(1));
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        let e = parse(r#"{"timeout_ms": 50}"#).unwrap_err();
        assert!(e.contains("serial.port: required"), "{e}");
        let e = parse(r#"{"port": "/dev/x", "reconnect_min_ms": 5000}"#).unwrap_err();
        assert!(e.contains("serial.reconnect_min_ms"), "{e}");
        let e = parse(r#"{"port": "/dev/x", "baud_rate": 9600}"#).unwrap_err();
        assert!(e.contains("baud_rate"), "{e}");
    }
}
