//! Each device's recording, as the daemon uses it: a measurement is
//! handed to the writer as soon as it is measured, and its answer leaves
//! only once the record is written (the device meanwhile measures on), a
//! device whose recording fails refuses batches under `on_error =
//! "refuse"`, and the failure shows in its status (WatchDevice, health)
//! until the writer finds the disk working again.

use std::sync::Arc;

use hilt_core::{DeviceSpec, Error as CoreError, Measurement};
use hilt_record::{Context, Kept, OnError, Record, Recorder};

use crate::config::RecordingConfig;
use crate::status::{EventKind, StatusHub};

/// Who asked for a batch, for its record.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// The lease id (only its tag is written).
    pub lease: String,
    /// The token's name.
    pub token: String,
    /// The client's address.
    pub peer: String,
}

/// One device's recording.
#[derive(Debug)]
pub struct DeviceRecording {
    recorder: Recorder,
    on_error: OnError,
    /// What every record of this device carries beside the request.
    base: Context,
    id: String,
    /// The recording directory (all devices).
    dir: std::path::PathBuf,
}

/// Which records a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Wall-clock start at or after this (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Wall-clock start before this.
    pub until_ns: Option<i64>,
    /// Measured under this lease (its tag).
    pub lease_tag: Option<String>,
    /// Sequence number at least this.
    pub from_seq: u64,
}

impl Filter {
    fn keeps(&self, r: &Record) -> bool {
        r.seq >= self.from_seq
            && self.since_ns.is_none_or(|t| r.wall_start_ns >= t)
            && self.until_ns.is_none_or(|t| r.wall_start_ns < t)
            && self.lease_tag.as_ref().is_none_or(|l| &r.lease == l)
    }
}

impl DeviceRecording {
    /// Open `spec`'s recording under `cfg.dir`, keep its spec beside it,
    /// and let its failures show in `status`.
    pub fn open(
        cfg: &RecordingConfig,
        spec: &DeviceSpec,
        config_hash: &str,
        status: Arc<StatusHub>,
    ) -> Result<Self, String> {
        let spec_json = serde_json::to_string_pretty(spec).map_err(|e| e.to_string())?;
        let spec_hash = hilt_record::short_hash(&spec_json);
        hilt_record::write_spec(&cfg.dir, &spec.id, &spec_hash, &spec_json)
            .map_err(|e| format!("recording: {e}"))?;
        let on_change = Arc::new(move |why: Option<&str>| {
            let why = why.map(|w| format!("recording failed: {w}"));
            status.update(EventKind::StateChanged, |s| s.recording_error = why);
        });
        let recorder = Recorder::open(&cfg.dir, &spec.id, cfg.options.clone(), on_change)
            .map_err(|e| format!("recording: {e}"))?;
        Ok(DeviceRecording {
            recorder,
            on_error: cfg.on_error,
            base: Context {
                spec_hash,
                config_hash: config_hash.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                git_revision: env!("HILT_GIT_REVISION").to_string(),
                ..Context::default()
            },
            id: spec.id.clone(),
            dir: cfg.dir.clone(),
        })
    }

    /// Send the records `filter` keeps to `out`, oldest first, reading
    /// one segment at a time on this (blocking) thread; stops when the
    /// receiver is gone.
    pub fn read(&self, filter: &Filter, out: &tokio::sync::mpsc::Sender<Result<Record, String>>) {
        let segments = match hilt_record::segments(&self.dir.join(&self.id)) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.blocking_send(Err(e.to_string()));
                return;
            }
        };
        for path in segments {
            let scan = match hilt_record::scan_segment(&path) {
                Ok(s) => s,
                Err(e) => {
                    let _ = out.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            for (_, r) in scan.records {
                if filter.keeps(&r) && out.blocking_send(Ok(r)).is_err() {
                    return;
                }
            }
        }
    }

    /// Refuse a batch that could not be kept, before it is measured.
    pub fn check(&self) -> Result<(), CoreError> {
        match (self.recorder.failure(), self.on_error) {
            (Some(why), OnError::Refuse) => Err(CoreError::Unavailable(format!(
                "{}: recording failed: {why}",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// Keep `m` (measured with `repeats` for `who`); `waiter` gets the
    /// record's ticket before the write starts, so the answer is encoded
    /// while the record is written, and leaves once it is.
    pub fn keep(&self, m: Arc<Measurement>, repeats: u32, who: &Who, waiter: impl FnOnce(Keeping)) {
        let ctx = Context {
            lease: hilt_record::lease_tag(&who.lease),
            token: who.token.clone(),
            peer: who.peer.clone(),
            ..self.base.clone()
        };
        self.recorder.keep(m, repeats, ctx, |kept| {
            waiter(Keeping {
                kept,
                on_error: self.on_error,
                id: self.id.clone(),
            })
        });
    }
}

/// A measurement's record on its way to the disk.
#[derive(Debug)]
pub struct Keeping {
    kept: Kept,
    on_error: OnError,
    id: String,
}

impl Keeping {
    /// Wait until the record is written. Under `refuse` a failed write
    /// fails the batch: it is not answered as kept.
    pub async fn done(self) -> Result<(), CoreError> {
        match self.kept.written().await {
            Ok(_) => Ok(()),
            Err(e) => match self.on_error {
                OnError::Refuse => Err(CoreError::Unavailable(format!(
                    "{}: recording failed: {e}",
                    self.id
                ))),
                OnError::Continue => {
                    tracing::error!(device = %self.id,
                        "recording failed, batch answered UNRECORDED (on_error = continue): {e}");
                    Ok(())
                }
            },
        }
    }
}
