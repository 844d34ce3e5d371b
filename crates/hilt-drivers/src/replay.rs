//! The replay backend: a recorded session served again. The k-th batch a
//! replayed device is asked for gets the k-th recorded answer, bit for
//! bit, when its x and θ (after the actuator grid, as the recorded device
//! applied them), shapes and repeats equal the record's; a request that
//! diverges is refused, naming the record and the first differing
//! element. A trainer's CI can so run against measurements of the real
//! rig, with no rig.

use std::path::{Path, PathBuf};

use hilt_core::{Backend, Device, DeviceSpec, Error as CoreError, Measurement, ValidBatch};
use hilt_record::Record;
use ndarray::Array2;

use crate::Error;
use crate::grid::Grid;

/// A device answering from a recording.
#[derive(Debug)]
pub struct ReplayDevice {
    spec: DeviceSpec,
    records: Vec<Record>,
    next: usize,
    source: PathBuf,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Config {
        field: "recording".into(),
        reason: reason.into(),
    }
}

impl ReplayDevice {
    /// Read device `id`'s whole recording under `dir` (it must be whole:
    /// a replay with a corrupt record in it would answer out of step).
    pub fn open(dir: &Path, id: &str, kind: &str) -> Result<Self, Error> {
        let scans = hilt_record::scan_device(dir, id).map_err(|e| bad(e.to_string()))?;
        let corrupt: usize = scans.iter().map(|s| s.corrupt.len()).sum();
        if corrupt > 0 {
            return Err(bad(format!(
                "{} holds {corrupt} corrupt record(s) of '{id}': a replay must be whole \
                 (hilt recording verify {} lists them)",
                dir.display(),
                dir.display()
            )));
        }
        let records: Vec<Record> = scans
            .into_iter()
            .flat_map(|s| s.records.into_iter().map(|(_, r)| r))
            .collect();
        let Some(first) = records.first() else {
            return Err(bad(format!(
                "no recording of device '{id}' in {}",
                dir.display()
            )));
        };
        if let Some(other) = records.iter().find(|r| r.spec_hash != first.spec_hash) {
            return Err(bad(format!(
                "the recording of '{id}' spans two device specs ({} from record {}, {} from \
                 record {}): replay one session",
                first.spec_hash, first.seq, other.spec_hash, other.seq
            )));
        }
        let path = dir.join(id).join(format!("spec-{}.json", first.spec_hash));
        let text =
            std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut spec: DeviceSpec =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if spec.kind != kind {
            return Err(bad(format!(
                "the recording is of a '{}' device; this one is configured as '{kind}'",
                spec.kind
            )));
        }
        spec.id = id.to_string();
        spec.backend = Backend::Replay;
        Ok(ReplayDevice {
            spec,
            records,
            next: 0,
            source: dir.join(id),
        })
    }

    /// Batches recorded.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Nothing recorded (never: `open` refuses an empty recording).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `asked` against `recorded`, element by element: the first that
    /// differs, if any.
    fn first_difference(what: &str, asked: &Array2<f32>, recorded: &Array2<f32>) -> Option<String> {
        if asked.dim() != recorded.dim() {
            return Some(format!(
                "{what} is {:?} here and {:?} in the recording",
                asked.dim(),
                recorded.dim()
            ));
        }
        asked
            .indexed_iter()
            .zip(recorded.iter())
            .find(|((_, a), r)| a.to_bits() != r.to_bits())
            .map(|(((i, j), a), r)| {
                format!("{what}[{i}, {j}] is {a} here and {r} in the recording")
            })
    }

    fn diverges(&self, rec: &Record, batch: &ValidBatch) -> Option<String> {
        let grid = Grid::of(&self.spec);
        let mut x = batch.x().clone();
        for mut row in x.rows_mut() {
            if let Some(row) = row.as_slice_mut() {
                grid.snap(row, &mut []);
            }
        }
        let mut theta = batch.theta().clone();
        for mut row in theta.rows_mut() {
            if let Some(row) = row.as_slice_mut() {
                grid.snap(&mut [], row);
            }
        }
        if batch.repeats() != rec.repeats {
            return Some(format!(
                "repeats is {} here and {} in the recording",
                batch.repeats(),
                rec.repeats
            ));
        }
        if batch.return_repeats() && rec.y_repeats.is_none() {
            return Some("every repeat is asked for; the recording kept only their mean".into());
        }
        let (Some(rx), Some(rt)) = (rec.x.to_array(), rec.theta.to_array()) else {
            return Some("the record's arrays disagree with their shapes".into());
        };
        Self::first_difference("x", &x, &rx)
            .or_else(|| Self::first_difference("theta", &theta, &rt))
    }
}

impl Device for ReplayDevice {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    fn cancel_safe(&self) -> bool {
        true
    }

    async fn execute(&mut self, batch: ValidBatch) -> Result<Measurement, CoreError> {
        let id = &self.spec.id;
        let k = self.next;
        let Some(rec) = self.records.get(k) else {
            return Err(CoreError::FailedPrecondition(format!(
                "{id}: the replayed recording ({}) holds {} batches; this would be batch {}",
                self.source.display(),
                self.records.len(),
                k + 1
            )));
        };
        if let Some(why) = self.diverges(rec, &batch) {
            return Err(CoreError::FailedPrecondition(format!(
                "{id}: batch {} diverges from record {} of {}: {why}",
                k + 1,
                rec.seq,
                self.source.display()
            )));
        }
        let mut m = rec.measurement().ok_or_else(|| {
            CoreError::Internal(format!("{id}: record {} does not decode", rec.seq))
        })?;
        if !batch.return_repeats() {
            m.y_repeats = None;
        }
        m.device_id.clone_from(id);
        self.next += 1;
        Ok(m)
    }
}
