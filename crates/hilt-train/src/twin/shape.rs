//! What a waveform twin needs to know of a device's timing, read from the
//! hyperparameters the device publishes: a device is driven by a held
//! waveform iff it publishes `response_memory_samples`, and then it also
//! publishes its hold, its time bins (`bin_edges`) and their readout. The
//! twin knows no rig by name.

use hilt_core::DeviceSpec;

use crate::error::{Error, Result};

/// The hyperparameter that marks a time-domain device: how many samples of
/// the drive its response still hears (a ring-down, an envelope).
pub const MEMORY_KEY: &str = "response_memory_samples";
/// The time bins over the drive's samples, half-open, as
/// `"start:end,start:end,…"`.
pub const BIN_EDGES_KEY: &str = "bin_edges";
/// Samples of look-ahead the filter may use: the acoustic delay and the
/// interface latency put the recorded window behind the drive.
pub const LEAD: usize = 64;

/// The readout the device applies to each time bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinReadout {
    /// Root mean square: a loudness (the plate's microphone).
    Rms,
    /// Mean: a level (the circuit's capacitor node).
    Mean,
}

/// A time-domain device's drive and readout.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Elements of the drive (the published encoding's controls).
    pub n_controls: usize,
    /// Samples each element is held for.
    pub hold: usize,
    /// The bins, half-open sample ranges, one per output.
    pub bins: Vec<(usize, usize)>,
    /// What each bin reports.
    pub readout: BinReadout,
    /// Samples of response memory the kernel covers. Longer drives
    /// (several copies of the input) are convolved, not given ever longer
    /// kernels.
    pub memory: usize,
}

fn bad(spec: &DeviceSpec, key: &str, why: impl std::fmt::Display) -> Error {
    Error::Device {
        device: spec.id.clone(),
        reason: format!("hyperparameter '{key}': {why}"),
    }
}

fn count(spec: &DeviceSpec, key: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse()
        .map_err(|_| bad(spec, key, format!("'{v}' is not a count")))
}

/// `"0:19,19:39"` → `[(0, 19), (19, 39)]`, each bin non-empty and inside
/// the drive's `n` samples, one per output.
fn parse_bins(spec: &DeviceSpec, v: &str, n: usize) -> Result<Vec<(usize, usize)>> {
    let mut bins = Vec::new();
    for part in v.split(',') {
        let (a, b) = part
            .split_once(':')
            .ok_or_else(|| bad(spec, BIN_EDGES_KEY, format!("'{part}' is not start:end")))?;
        let (a, b) = (
            count(spec, BIN_EDGES_KEY, a)?,
            count(spec, BIN_EDGES_KEY, b)?,
        );
        if a >= b || b > n {
            return Err(bad(
                spec,
                BIN_EDGES_KEY,
                format!("bin {a}:{b} is empty or outside the drive's {n} samples"),
            ));
        }
        bins.push((a, b));
    }
    if bins.len() != spec.n_out {
        return Err(bad(
            spec,
            BIN_EDGES_KEY,
            format!("{} bins for {} outputs", bins.len(), spec.n_out),
        ));
    }
    Ok(bins)
}

impl Shape {
    /// `None` for devices that are not driven by a held waveform (they
    /// publish no `response_memory_samples`); an error naming the device and
    /// the key when a time-domain device's description is incomplete.
    pub fn for_spec(spec: &DeviceSpec) -> Result<Option<Self>> {
        let Some(memory) = spec.hyperparameters.get(MEMORY_KEY) else {
            return Ok(None);
        };
        let memory = count(spec, MEMORY_KEY, memory)?;
        if memory == 0 {
            return Err(bad(spec, MEMORY_KEY, "must be at least 1"));
        }
        let enc = spec.encoding.as_ref().ok_or_else(|| Error::Device {
            device: spec.id.clone(),
            reason: "publishes no drive encoding".into(),
        })?;
        let get = |k: &str| {
            spec.hyperparameters
                .get(k)
                .ok_or_else(|| bad(spec, k, "not published"))
        };
        let hold = count(spec, "hold_samples", get("hold_samples")?)?;
        let readout = match get("readout")?.as_str() {
            "rms" => BinReadout::Rms,
            "mean" => BinReadout::Mean,
            other => return Err(bad(spec, "readout", format!("unknown readout '{other}'"))),
        };
        let n = enc.n_controls() * hold;
        let n_bins = spec.n_out;
        if hold == 0 || n_bins == 0 || n_bins > n {
            return Err(Error::Device {
                device: spec.id.clone(),
                reason: format!("{n_bins} bins of {n} samples"),
            });
        }
        let bins = parse_bins(spec, get(BIN_EDGES_KEY)?, n)?;
        Ok(Some(Shape {
            n_controls: enc.n_controls(),
            hold,
            bins,
            readout,
            memory,
        }))
    }

    /// Samples of the whole drive.
    pub fn samples(&self) -> usize {
        self.n_controls * self.hold
    }

    /// Kernel taps: the response's memory plus the look-ahead.
    pub fn taps(&self) -> usize {
        self.samples().min(self.memory) + LEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plate(edges: &str, memory: &str) -> DeviceSpec {
        let mut s = crate::twin::tests::spec(2, 2, 2);
        s.encoding = Some(hilt_core::ControlEncoding {
            layout: "superpose".into(),
            input_index: vec![0, 1],
            param_index: vec![0, 1],
            input_scale: 1.0,
            control_min: -1.0,
            control_max: 1.0,
        });
        for (k, v) in [
            ("hold_samples", "3"),
            ("readout", "rms"),
            (BIN_EDGES_KEY, edges),
            (MEMORY_KEY, memory),
        ] {
            s.hyperparameters.insert(k.into(), v.into());
        }
        s
    }

    #[test]
    fn the_published_keys_give_the_shape() {
        let s = Shape::for_spec(&plate("0:3, 3:6", "1024"))
            .unwrap()
            .unwrap();
        assert_eq!((s.n_controls, s.hold, s.memory), (2, 3, 1024));
        assert_eq!(s.bins, vec![(0, 3), (3, 6)]);
        assert_eq!(s.readout, BinReadout::Rms);
        // Without the memory key the device is not a time-domain one.
        let mut other = plate("0:3,3:6", "1");
        other.hyperparameters.remove(MEMORY_KEY);
        assert_eq!(Shape::for_spec(&other).unwrap(), None);
    }

    #[test]
    fn malformed_keys_are_refused_naming_device_and_key() {
        for (edges, memory, key) in [
            ("0:3,3:7", "1024", BIN_EDGES_KEY),
            ("0:3", "1024", BIN_EDGES_KEY),
            ("0-3,3:6", "1024", BIN_EDGES_KEY),
            ("3:3,3:6", "1024", BIN_EDGES_KEY),
            ("0:3,3:6", "lots", MEMORY_KEY),
            ("0:3,3:6", "0", MEMORY_KEY),
        ] {
            let e = Shape::for_spec(&plate(edges, memory))
                .unwrap_err()
                .to_string();
            assert!(e.contains("device 'synthetic'") && e.contains(key), "{e}");
        }
        let mut s = plate("0:3,3:6", "1024");
        s.hyperparameters.remove(BIN_EDGES_KEY);
        let e = Shape::for_spec(&s).unwrap_err().to_string();
        assert!(
            e.contains(BIN_EDGES_KEY) && e.contains("not published"),
            "{e}"
        );
    }
}
