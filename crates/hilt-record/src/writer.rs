//! The writing side. A measurement is encoded straight from the device's
//! answer (shared, not copied) and written with one `pwrite(2)` into space
//! reserved ahead (`segment.rs`), so it is in the kernel, and survives
//! `kill -9` of hiltd, once its [`Kept`] resolves; it is made durable by
//! `fsync` according to [`Fsync`]. Under `never` and `interval` the
//! caller writes (a copy into the page cache costs less than waking a
//! thread); one thread per device reserves space, makes group commits,
//! probes a failed disk once a second until writing works again, and
//! under `always` writes and syncs each record itself, so no runtime
//! thread waits for the disk. A write that fails is cut back off the
//! file and the recorder reports itself failed.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use hilt_core::Measurement;

use crate::Error;
use crate::encode::RecordRef;
use crate::frame::frame;
use crate::record::{Context, Record};
use crate::segment::{Reservation, Segments};

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

/// What is appended: a measurement as the device answered it, or a
/// record as read back (tests, copies).
enum Entry {
    Measured(Arc<Measurement>, u32, Box<Context>),
    Record(Box<Record>),
}

impl Entry {
    fn record(&self, seq: u64) -> RecordRef<'_> {
        match self {
            Entry::Measured(m, repeats, ctx) => RecordRef::of(m, *repeats, ctx, seq),
            Entry::Record(r) => RecordRef::of_record(r, seq),
        }
    }
}

enum Cmd {
    /// Write (and sync) this, under `Fsync::Always`.
    Append(Entry, oneshot::Sender<Result<u64, Error>>),
    /// Reserve space ahead of the writes (and fault the next pages in).
    Reserve,
    /// Fault the pages of the next records in for writing.
    Prepare,
    /// Seal the open segment and end.
    Stop,
}

/// A record on its way to the disk: resolves to its sequence number once
/// it is written (and synced, under `Fsync::Always`).
#[derive(Debug)]
pub struct Kept(oneshot::Receiver<Result<u64, Error>>);

impl Kept {
    /// Wait until the record is written.
    pub async fn written(self) -> Result<u64, Error> {
        self.0.await.map_err(|_| Error::Stopped)?
    }
}

/// Told when writing starts failing (`Some(why)`) and when it works
/// again (`None`), from the writer thread.
pub type FailureObserver = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// One device's recording, open for appending.
#[derive(Debug)]
pub struct Recorder {
    /// The open segment. Appends that need not wait for the disk write
    /// it on the caller's thread (a copy into the page cache, tens of µs:
    /// cheaper than waking another thread); the writer thread takes the
    /// lock for fsyncs, probes and `Fsync::Always` appends.
    segments: Arc<Mutex<Segments>>,
    always: bool,
    tx: mpsc::Sender<Cmd>,
    failed: Arc<Mutex<Option<String>>>,
    /// Joined on drop: the open segment is sealed (reserved space cut,
    /// synced) before the recorder is gone.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Append(..) => "Append",
            Cmd::Reserve => "Reserve",
            Cmd::Prepare => "Prepare",
            Cmd::Stop => "Stop",
        })
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
        let always = opts.fsync == Fsync::Always;
        let mut w = Segments::open(dir.join(device), opts, Arc::clone(&failed))?;
        w.on_change = Some(on_change);
        let segments = Arc::new(Mutex::new(w));
        // The first records find their space ready.
        reserve(&segments);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&segments);
        let thread = std::thread::Builder::new()
            .name(format!("record-{device}"))
            .spawn(move || run(&shared, rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok(Recorder {
            segments,
            always,
            tx,
            failed,
            thread: Some(thread),
        })
    }

    /// Append `m` (measured with `repeats`, asked for as `ctx` says),
    /// encoded straight from the measurement. `waiter` gets the record's
    /// [`Kept`] before the write starts, so whoever waits for it (the
    /// answer) can do its own work meanwhile. Unless `Fsync::Always` is
    /// set the record is written on this thread before `keep` returns;
    /// under `Always` the writer thread writes and syncs it.
    pub fn keep(&self, m: Arc<Measurement>, repeats: u32, ctx: Context, waiter: impl FnOnce(Kept)) {
        self.append_entry(Entry::Measured(m, repeats, Box::new(ctx)), waiter);
    }

    /// Append `rec` (its `seq` is set here); returns the sequence number
    /// once the record is written (and synced, under `Fsync::Always`).
    pub async fn append(&self, rec: Record) -> Result<u64, Error> {
        let mut kept = None;
        self.append_entry(Entry::Record(Box::new(rec)), |k| kept = Some(k));
        match kept {
            Some(k) => k.written().await,
            None => Err(Error::Stopped),
        }
    }

    fn append_entry(&self, entry: Entry, waiter: impl FnOnce(Kept)) {
        let (ack, rx) = oneshot::channel();
        waiter(Kept(rx));
        if self.always {
            // A stopped writer drops the ack, and `written` says so.
            let _ = self.tx.send(Cmd::Append(entry, ack));
        } else {
            let mut segs = lock(&self.segments);
            let _ = ack.send(append(&mut segs, &entry));
            if segs.reservation_due() {
                let _ = self.tx.send(Cmd::Reserve);
            } else if segs.preparation_due() {
                // Marked under way only when the writer takes it: a second
                // append before then may send it again, which is harmless.
                let _ = self.tx.send(Cmd::Prepare);
            }
        }
    }

    /// Why the last write failed, while writing still fails.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn lock(segments: &Mutex<Segments>) -> std::sync::MutexGuard<'_, Segments> {
    segments.lock().unwrap_or_else(|p| p.into_inner())
}

fn append(segs: &mut Segments, entry: &Entry) -> Result<u64, Error> {
    let mut small = std::mem::take(&mut segs.buf);
    let r = frame(&entry.record(segs.next_seq()), &mut small).and_then(|f| segs.append(&f));
    segs.buf = small;
    r
}

/// Reserve space ahead of the writes, without holding the lock while the
/// disk allocates and the pages are read in.
fn reserve(segments: &Mutex<Segments>) {
    let Some(r) = lock(segments).reservation() else {
        return;
    };
    let made = Reservation::make(&r);
    if let Err(e) = &made {
        tracing::debug!("recording: no space reserved ahead ({e}); records extend the file");
    }
    lock(segments).reserved(&r, made);
    prepare(segments);
}

/// Fault the next records' pages in, without holding the lock.
fn prepare(segments: &Mutex<Segments>) {
    let Some(p) = lock(segments).preparation() else {
        return;
    };
    let made = p.make();
    if let Err(e) = &made {
        tracing::debug!("recording: pages not faulted in ahead ({e}); records are written");
    }
    lock(segments).prepared(&p, made.is_ok());
}

/// A group commit's fsync, without holding the lock.
fn group_commit(segments: &Mutex<Segments>) {
    let Some((file, path)) = lock(segments).due_sync() else {
        return;
    };
    if let Err(e) = file.sync_data() {
        // The records are written; the disk failed to make them durable.
        // Say so, and keep trying.
        lock(segments).set_failed(Some(format!("{}: fsync: {e}", path.display())));
    }
    // The fsync cleaned the pages ahead too.
    prepare(segments);
}

/// The writer thread: reservations, `Fsync::Always` appends, group
/// commits, probes, and the last sync when the recorder is dropped.
fn run(segments: &Mutex<Segments>, rx: mpsc::Receiver<Cmd>) {
    loop {
        let wait = lock(segments).next_duty();
        let got = rx.recv_timeout(wait);
        if got.is_ok() {
            // Commands may come faster than the window: a group commit
            // that is due must not wait for a quiet moment.
            group_commit(segments);
        }
        match got {
            Ok(Cmd::Append(entry, ack)) => {
                let r = append(&mut lock(segments), &entry);
                let _ = ack.send(r);
                reserve(segments);
            }
            Ok(Cmd::Reserve) => reserve(segments),
            Ok(Cmd::Prepare) => prepare(segments),
            Err(RecvTimeoutError::Timeout) => {
                let mut segs = lock(segments);
                if segs.is_failed() {
                    segs.probe();
                    drop(segs);
                    reserve(segments);
                } else {
                    drop(segs);
                    group_commit(segments);
                }
            }
            Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = lock(segments).seal() {
                    tracing::warn!("recording: last sync failed: {e}");
                }
                return;
            }
        }
    }
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
