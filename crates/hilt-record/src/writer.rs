//! The writing side: one thread per device owns its open segment. A
//! record is handed over, written with one `write(2)` (so it is in the
//! kernel, and survives `kill -9` of hiltd, before [`Recorder::append`]
//! returns), and made durable by `fsync` according to [`Fsync`]. A write
//! that fails is cut back off the file, the recorder reports itself failed
//! and probes the disk once a second until writing works again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::Error;
use crate::frame::{SEGMENT_HEADER, encode, segment_header};
use crate::reader::{scan_segment, segments};
use crate::record::Record;

/// What survives a power cut, beyond what survives a crash of hiltd
/// (every acknowledged record, whatever this says).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fsync {
    /// `fdatasync` before each answer: nothing acknowledged is lost.
    Always,
    /// Group commit: an fsync every window, in the background (appends do
    /// not wait for it); a power cut loses the records of the last window
    /// or two (one more while an fsync is still running).
    Interval(Duration),
    /// The kernel writes back when it likes (~30 s on Linux).
    Never,
}

/// When the recording cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The device refuses batches it could not keep.
    #[default]
    Refuse,
    /// The device measures unrecorded (logged at every failure).
    Continue,
}

/// How a device's recording is written.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterOptions {
    /// Durability.
    pub fsync: Fsync,
    /// A new segment starts once the current one would pass this size.
    pub segment_bytes: u64,
    /// Oldest segments are deleted while the device's total is above this.
    pub retain_bytes: Option<u64>,
    /// Segments last written longer ago than this are deleted.
    pub retain_age: Option<Duration>,
}

enum Cmd {
    Append(Box<Record>, oneshot::Sender<Result<u64, Error>>),
}

/// Told when writing starts failing (`Some(why)`) and when it works
/// again (`None`), from the writer thread.
pub type FailureObserver = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// One device's recording, open for appending.
#[derive(Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Cmd>,
    failed: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Append")
    }
}

impl Recorder {
    /// Open (creating) `dir/<device>`, recover its newest segment (a torn
    /// tail is cut off and logged) and start the writer thread.
    pub fn open(
        dir: &Path,
        device: &str,
        opts: WriterOptions,
        on_change: FailureObserver,
    ) -> Result<Recorder, Error> {
        let failed = Arc::new(Mutex::new(None));
        let mut w = Segments::open(dir.join(device), opts, Arc::clone(&failed))?;
        w.on_change = Some(on_change);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("record-{device}"))
            .spawn(move || w.run(rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok(Recorder { tx, failed })
    }

    /// Append `rec` (its `seq` is set here); returns the sequence number
    /// once the record is written (and synced, under `Fsync::Always`).
    pub async fn append(&self, rec: Record) -> Result<u64, Error> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append(Box::new(rec), ack))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Why the last write failed, while writing still fails.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Segments {
    dir: PathBuf,
    opts: WriterOptions,
    file: File,
    path: PathBuf,
    size: u64,
    next_seq: u64,
    dirty: bool,
    last_sync: Instant,
    failed: Arc<Mutex<Option<String>>>,
    on_change: Option<FailureObserver>,
    /// Group commit's fsync runs here, so appends never wait for the disk
    /// under `Fsync::Interval`; its last error comes back through `synced`.
    syncer: Option<mpsc::SyncSender<(File, PathBuf)>>,
    synced: Arc<Mutex<Option<String>>>,
}

/// A thread that fsyncs the files it is handed, one at a time.
fn spawn_syncer(errors: Arc<Mutex<Option<String>>>) -> Option<mpsc::SyncSender<(File, PathBuf)>> {
    let (tx, rx) = mpsc::sync_channel::<(File, PathBuf)>(1);
    std::thread::Builder::new()
        .name("record-fsync".into())
        .spawn(move || {
            for (f, path) in rx {
                let r = f
                    .sync_data()
                    .map_err(|e| format!("{}: fsync: {e}", path.display()));
                *errors.lock().unwrap_or_else(|p| p.into_inner()) = r.err();
            }
        })
        .ok()?;
    Some(tx)
}

fn segment_name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.hrec"))
}

impl Segments {
    fn open(
        dir: PathBuf,
        opts: WriterOptions,
        failed: Arc<Mutex<Option<String>>>,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let existing = segments(&dir)?;
        let mut next_seq = 1;
        for path in existing.iter().rev() {
            let scan = scan_segment(path)?;
            if let Some((off, len)) = scan.torn_tail.filter(|_| Some(path) == existing.last()) {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                f.set_len(off).map_err(|e| Error::io(path, e))?;
                f.sync_all().map_err(|e| Error::io(path, e))?;
                tracing::warn!(segment = %path.display(), offset = off, bytes = len,
                    "recording recovered: cut a torn record off the end of the segment");
            }
            if let Some((_, last)) = scan.records.last() {
                next_seq = last.seq + 1;
                break;
            }
        }
        let (file, path, size) = match existing.last() {
            Some(p)
                if std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX)
                    < opts.segment_bytes =>
            {
                let f = OpenOptions::new()
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::io(p, e))?;
                let size = f.metadata().map_err(|e| Error::io(p, e))?.len();
                (f, p.clone(), size)
            }
            _ => new_segment(&dir, next_seq)?,
        };
        Ok(Segments {
            dir,
            opts,
            file,
            path,
            size,
            next_seq,
            dirty: false,
            last_sync: Instant::now(),
            failed,
            on_change: None,
            syncer: None,
            synced: Arc::default(),
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            let wait = if self.is_failed() {
                Duration::from_secs(1)
            } else {
                match self.opts.fsync {
                    Fsync::Interval(d) if self.dirty => d.saturating_sub(self.last_sync.elapsed()),
                    _ => Duration::from_secs(3600),
                }
            };
            match rx.recv_timeout(wait) {
                Ok(Cmd::Append(rec, ack)) => {
                    let r = self.append(*rec);
                    let _ = ack.send(r);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.is_failed() {
                        self.probe();
                    } else if self.dirty {
                        self.sync_in_background();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.sync();
                    return;
                }
            }
        }
    }

    fn is_failed(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn set_failed(&self, why: Option<String>) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match (&*f, &why) {
            (None, Some(w)) => {
                tracing::error!(dir = %self.dir.display(), "recording failed: {w}");
                true
            }
            (Some(_), None) => {
                tracing::warn!(dir = %self.dir.display(), "recording works again");
                true
            }
            _ => false,
        };
        *f = why.clone();
        drop(f);
        if changed && let Some(tell) = &self.on_change {
            tell(why.as_deref());
        }
    }

    fn append(&mut self, mut rec: Record) -> Result<u64, Error> {
        rec.seq = self.next_seq;
        let bytes = encode(&rec)?;
        let len = bytes.len() as u64;
        if self.size > SEGMENT_HEADER as u64 && self.size + len > self.opts.segment_bytes {
            self.rotate()
                .inspect_err(|e| self.set_failed(Some(e.to_string())))?;
        }
        if let Err(e) = self.file.write_all(&bytes) {
            // A part of the record may be on disk: cut it, so the next
            // record starts where this one did.
            let _ = self.file.set_len(self.size);
            let e = Error::io(&self.path, e);
            self.set_failed(Some(e.to_string()));
            return Err(e);
        }
        self.size += len;
        self.next_seq += 1;
        self.dirty = true;
        match self.opts.fsync {
            Fsync::Always => self
                .sync()
                .inspect_err(|e| self.set_failed(Some(e.to_string())))?,
            Fsync::Interval(d) if self.last_sync.elapsed() >= d => self.sync_in_background(),
            _ => {}
        }
        let sync_error = self.synced.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(e) = sync_error {
            // The record is written; the disk failed to make earlier ones
            // durable. Say so, and keep trying.
            self.set_failed(Some(e));
            return Ok(rec.seq);
        }
        self.set_failed(None);
        Ok(rec.seq)
    }

    fn sync(&mut self) -> Result<(), Error> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Hand the open segment to the fsync thread; if it is still busy
    /// with the previous one, the next window syncs both.
    fn sync_in_background(&mut self) {
        if !self.dirty {
            return;
        }
        let syncer = match &self.syncer {
            Some(s) => s.clone(),
            None => match spawn_syncer(Arc::clone(&self.synced)) {
                Some(s) => {
                    self.syncer = Some(s.clone());
                    s
                }
                None => {
                    let _ = self.sync();
                    return;
                }
            },
        };
        match self.file.try_clone() {
            Ok(f) => {
                if syncer.try_send((f, self.path.clone())).is_ok() {
                    self.dirty = false;
                }
                // Sent or not (the last fsync still runs), the next try is
                // a window from now: never a busy loop.
                self.last_sync = Instant::now();
            }
            Err(_) => {
                let _ = self.sync();
            }
        }
    }

    fn rotate(&mut self) -> Result<(), Error> {
        self.sync()?;
        let (file, path, size) = new_segment(&self.dir, self.next_seq)?;
        self.file = file;
        self.path = path;
        self.size = size;
        self.retain();
        Ok(())
    }

    /// Delete the oldest segments (never the one open) past the limits.
    fn retain(&self) {
        let Ok(all) = segments(&self.dir) else { return };
        let sized: Vec<(PathBuf, u64, Option<SystemTime>)> = all
            .into_iter()
            .filter(|p| *p != self.path)
            .map(|p| {
                let m = std::fs::metadata(&p).ok();
                let len = m.as_ref().map_or(0, |m| m.len());
                let mtime = m.and_then(|m| m.modified().ok());
                (p, len, mtime)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|s| s.1).sum::<u64>() + self.size;
        for (p, len, mtime) in sized {
            let too_big = self.opts.retain_bytes.is_some_and(|max| total > max);
            let too_old = self.opts.retain_age.is_some_and(|age| {
                mtime
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e > age)
            });
            if !(too_big || too_old) {
                continue;
            }
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    total = total.saturating_sub(len);
                    tracing::info!(segment = %p.display(), bytes = len,
                        reason = if too_big { "retain_bytes" } else { "retain_age" },
                        "recording: oldest segment deleted");
                }
                Err(e) => tracing::warn!(segment = %p.display(), "cannot delete: {e}"),
            }
        }
    }

    /// While failed: can the disk take a write again?
    fn probe(&mut self) {
        let probe = self.dir.join(".probe");
        let ok = (|| -> std::io::Result<()> {
            let mut f = File::create(&probe)?;
            f.write_all(&[0u8; 4096])?;
            f.sync_data()?;
            std::fs::remove_file(&probe)
        })();
        if ok.is_ok() {
            // The open segment may have been removed with its directory.
            if !self.path.exists() {
                match new_segment(&self.dir, self.next_seq) {
                    Ok((file, path, size)) => {
                        self.file = file;
                        self.path = path;
                        self.size = size;
                    }
                    Err(_) => return,
                }
            }
            self.set_failed(None);
        } else {
            let _ = std::fs::remove_file(&probe);
        }
    }
}

fn new_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf, u64), Error> {
    let path = segment_name(dir, first_seq);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let size = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    if size == 0 {
        f.write_all(&segment_header())
            .map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))?;
        // The new name must survive a power cut too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        return Ok((f, path, SEGMENT_HEADER as u64));
    }
    Ok((f, path, size))
}

/// Keep `spec_json` (the device's spec as served) beside its recording as
/// `spec-<hash>.json`, so an export knows what the records were measured
/// on. Written once per spec, atomically.
pub fn write_spec(dir: &Path, device: &str, hash: &str, spec_json: &str) -> Result<(), Error> {
    let dev = dir.join(device);
    std::fs::create_dir_all(&dev).map_err(|e| Error::io(&dev, e))?;
    let path = dev.join(format!("spec-{hash}.json"));
    if path.exists() {
        return Ok(());
    }
    let tmp = dev.join(format!(".spec-{hash}.json.tmp"));
    std::fs::write(&tmp, spec_json).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}
