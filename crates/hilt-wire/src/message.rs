//! What host and board say to each other. Every request gets exactly one
//! reply carrying the request's sequence number: the reply type, or
//! [`Message::Error`].

use serde::{Deserialize, Serialize};

/// Which protocol versions a side speaks, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u8,
    /// Newest version spoken.
    pub max: u8,
}

impl VersionRange {
    /// The highest version both sides speak.
    pub fn negotiate(self, other: VersionRange) -> Option<u8> {
        let v = self.max.min(other.max);
        (v >= self.min.max(other.min)).then_some(v)
    }
}

/// What a board can do: enough for the host to build the device's spec
/// and to size its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `shg`, `plate` or `circuit`.
    pub rig: String,
    /// Inputs per row; must equal the device spec's `n_in`.
    pub n_in: u32,
    /// Parameters per row; must equal the spec's `n_par`.
    pub n_par: u32,
    /// Outputs per row; must equal the spec's `n_out`.
    pub n_out: u32,
    /// Rows one LoadDrive may carry (the board's drive memory).
    pub max_rows: u32,
    /// Repeats one Acquire may ask for.
    pub max_repeats: u32,
    /// Hard limits the board itself enforces on x, `[min, max]` (it
    /// clamps, and says so in the applied values); must cover the host's.
    pub input_range: [f32; 2],
    /// The same for θ.
    pub param_range: [f32; 2],
    /// Expected wall time per measured row and repeat.
    pub seconds_per_sample: f64,
}

/// Who the board is. Identify/Identity are frozen: every version must
/// accept them in version-1 frames, so negotiation can start anywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Board model.
    pub model: String,
    /// Serial number; part of the calibration id.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
    /// The versions the board speaks.
    pub protocol: VersionRange,
    /// Sizes and limits under the current configuration.
    pub capabilities: Capabilities,
}

/// A drive for `rows` samples, row-major: `x` is `rows × n_in`, `theta`
/// `rows × n_par`. Loading replaces whatever was loaded: idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drive {
    /// Samples in this drive, 1..=`max_rows`.
    pub rows: u32,
    /// `rows × n_in` values.
    pub x: Vec<f32>,
    /// `rows × n_par` values, or one row of `n_par` shared by every row
    /// (what hiltd's driver sends for a shared θ, and the emulator takes).
    pub theta: Vec<f32>,
}

/// What one acquisition measured: `y` is `repeats × rows × n_out`, the
/// applied values are what the actuators really played (after the board's
/// clamping and quantisation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    /// Rows of the loaded drive.
    pub rows: u32,
    /// Repeats measured, as asked.
    pub repeats: u32,
    /// `repeats × rows × n_out` values.
    pub y: Vec<f32>,
    /// `rows × n_in` values.
    pub applied_x: Vec<f32>,
    /// Shaped like the drive's `theta`.
    pub applied_theta: Vec<f32>,
    /// Per row: the detector saturated in some repeat.
    pub saturated: Vec<bool>,
    /// Per row, on the board's clock: the start of its first shot and the
    /// end of its last (the rows are swept once per repeat).
    pub started_s: Vec<f64>,
    /// See `started_s`.
    pub finished_s: Vec<f64>,
}

/// Why a board refused a request. On the wire: the number, as a u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame failed its CRC or COBS decoding; the board could not trust
    /// its sequence number and answers with the sequence number 0.
    BadFrame = 1,
    /// The frame's version is not one the board speaks.
    UnsupportedVersion = 2,
    /// The message type byte is unknown.
    UnknownMessage = 3,
    /// The payload did not decode, or its sizes disagree with the board.
    BadPayload = 4,
    /// Acquire with no drive loaded (none yet, or the board was reset
    /// since).
    NotReady = 5,
    /// A count outside the board's capabilities (rows, repeats), or a
    /// configuration it cannot run. Drive values never are: they are
    /// clamped.
    OutOfRange = 6,
    /// The board is measuring and cannot take this request now.
    Busy = 7,
    /// The instrument behind the board failed.
    Hardware = 8,
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c as u16
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = String;

    fn try_from(v: u16) -> Result<Self, String> {
        use ErrorCode::*;
        [
            BadFrame,
            UnsupportedVersion,
            UnknownMessage,
            BadPayload,
            NotReady,
            OutOfRange,
            Busy,
            Hardware,
        ]
        .into_iter()
        .find(|c| *c as u16 == v)
        .ok_or_else(|| format!("unknown error code {v}"))
    }
}

impl ErrorCode {
    /// Whether resending the same request can succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::BadFrame | ErrorCode::Busy)
    }
}

/// A board's refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why, in a form the host acts on.
    pub code: ErrorCode,
    /// Why, for people.
    pub detail: String,
}

impl Refusal {
    /// A refusal with `code` and a human-readable `detail`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Refusal {
            code,
            detail: detail.into(),
        }
    }
}

/// Every message, with its type byte on the wire (replies have the high
/// bit set; [`Message::Error`] answers any request).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// 0x01: who are you? Carries the host's version range.
    Identify(VersionRange),
    /// 0x81: the board's identity and capabilities.
    Identity(Identity),
    /// 0x02: hyperparameters as `key = value` pairs; all or nothing.
    Configure(Vec<(String, String)>),
    /// 0x82: the board's hash of its whole configuration.
    Configured {
        /// Changes with any configuration value; part of the calibration
        /// id.
        config_hash: u64,
    },
    /// 0x03: replace the loaded drive.
    LoadDrive(Drive),
    /// 0x83: rows now loaded.
    Loaded {
        /// The drive's `rows`.
        rows: u32,
    },
    /// 0x04: measure the loaded drive `repeats` times.
    Acquire {
        /// 1..=`max_repeats`.
        repeats: u32,
    },
    /// 0x84: what the Acquire measured.
    Result(Acquisition),
    /// 0x05: are you there? The nonce comes back.
    Heartbeat {
        /// Any value; echoed in `Alive`.
        nonce: u32,
    },
    /// 0x85: the answer to Heartbeat.
    Alive {
        /// The Heartbeat's nonce.
        nonce: u32,
        /// Milliseconds since the board started.
        uptime_ms: u64,
    },
    /// 0x06: put the actuators in their safe state (drive outputs at
    /// zero, the loaded drive discarded) and keep them there until the
    /// next LoadDrive. Sent when an operator halts the daemon.
    Safe,
    /// 0x86: the actuators are safe.
    Safed,
    /// 0x7f: the request was refused.
    Error(Refusal),
}

impl Message {
    /// Type byte of Identify.
    pub const IDENTIFY: u8 = 0x01;
    /// Type byte of Configure.
    pub const CONFIGURE: u8 = 0x02;
    /// Type byte of LoadDrive.
    pub const LOAD_DRIVE: u8 = 0x03;
    /// Type byte of Acquire.
    pub const ACQUIRE: u8 = 0x04;
    /// Type byte of Heartbeat.
    pub const HEARTBEAT: u8 = 0x05;
    /// Type byte of Safe.
    pub const SAFE: u8 = 0x06;
    /// Type byte of Error, the reply to any request.
    pub const ERROR: u8 = 0x7f;
    /// Set in a reply's type byte: reply = request | REPLY.
    pub const REPLY: u8 = 0x80;

    /// The type byte this message is sent with.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Identify(_) => Self::IDENTIFY,
            Message::Identity(_) => Self::IDENTIFY | Self::REPLY,
            Message::Configure(_) => Self::CONFIGURE,
            Message::Configured { .. } => Self::CONFIGURE | Self::REPLY,
            Message::LoadDrive(_) => Self::LOAD_DRIVE,
            Message::Loaded { .. } => Self::LOAD_DRIVE | Self::REPLY,
            Message::Acquire { .. } => Self::ACQUIRE,
            Message::Result(_) => Self::ACQUIRE | Self::REPLY,
            Message::Heartbeat { .. } => Self::HEARTBEAT,
            Message::Alive { .. } => Self::HEARTBEAT | Self::REPLY,
            Message::Safe => Self::SAFE,
            Message::Safed => Self::SAFE | Self::REPLY,
            Message::Error(_) => Self::ERROR,
        }
    }

    /// Whether this is a request (host to board).
    pub fn is_request(&self) -> bool {
        self.kind() & Self::REPLY == 0 && !matches!(self, Message::Error(_))
    }

    /// The reply type byte a request expects (besides Error).
    pub fn reply_kind(&self) -> Option<u8> {
        self.is_request().then(|| self.kind() | Self::REPLY)
    }

    /// Whether sending the request twice has the effect of sending it once,
    /// so a driver may resend it after a lost reply. Acquire is not: each
    /// one is a new measurement that advances the rig's clock and drift.
    pub fn idempotent(&self) -> bool {
        matches!(
            self,
            Message::Identify(_)
                | Message::Configure(_)
                | Message::LoadDrive(_)
                | Message::Heartbeat { .. }
                | Message::Safe
        )
    }

    pub(crate) fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        fn put<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
            let bytes = postcard::to_extend(v, std::mem::take(out))?;
            *out = bytes;
            Ok(())
        }
        match self {
            Message::Identify(v) => put(v, out),
            Message::Identity(v) => put(v, out),
            Message::Configure(v) => put(v, out),
            Message::Configured { config_hash } => put(config_hash, out),
            Message::LoadDrive(v) => put(v, out),
            Message::Loaded { rows } => put(rows, out),
            Message::Acquire { repeats } => put(repeats, out),
            Message::Result(v) => put(v, out),
            Message::Heartbeat { nonce } => put(nonce, out),
            Message::Alive { nonce, uptime_ms } => put(&(nonce, uptime_ms), out),
            Message::Safe | Message::Safed => put(&(), out),
            Message::Error(v) => put(v, out),
        }
    }

    /// `None` for an unknown type byte.
    pub(crate) fn read_payload(kind: u8, p: &[u8]) -> Option<Result<Message, postcard::Error>> {
        fn get<'a, T: Deserialize<'a>>(p: &'a [u8]) -> Result<T, postcard::Error> {
            let (v, rest) = postcard::take_from_bytes(p)?;
            if rest.is_empty() {
                Ok(v)
            } else {
                Err(postcard::Error::DeserializeBadEncoding)
            }
        }
        const IDENTITY: u8 = Message::IDENTIFY | Message::REPLY;
        const CONFIGURED: u8 = Message::CONFIGURE | Message::REPLY;
        const LOADED: u8 = Message::LOAD_DRIVE | Message::REPLY;
        const RESULT: u8 = Message::ACQUIRE | Message::REPLY;
        const ALIVE: u8 = Message::HEARTBEAT | Message::REPLY;
        const SAFED: u8 = Message::SAFE | Message::REPLY;
        Some(match kind {
            Message::IDENTIFY => get(p).map(Message::Identify),
            IDENTITY => get(p).map(Message::Identity),
            Message::CONFIGURE => get(p).map(Message::Configure),
            CONFIGURED => get(p).map(|config_hash| Message::Configured { config_hash }),
            Message::LOAD_DRIVE => get(p).map(Message::LoadDrive),
            LOADED => get(p).map(|rows| Message::Loaded { rows }),
            Message::ACQUIRE => get(p).map(|repeats| Message::Acquire { repeats }),
            RESULT => get(p).map(Message::Result),
            Message::HEARTBEAT => get(p).map(|nonce| Message::Heartbeat { nonce }),
            ALIVE => get(p).map(|(nonce, uptime_ms)| Message::Alive { nonce, uptime_ms }),
            Message::SAFE => get::<()>(p).map(|()| Message::Safe),
            SAFED => get::<()>(p).map(|()| Message::Safed),
            Message::ERROR => get(p).map(Message::Error),
            _ => return None,
        })
    }
}
