//! What a held-waveform rig measures of its recorded trace: one value
//! per time bin, and what it publishes of that timing for a twin.

use serde::{Deserialize, Serialize};

/// What a held-waveform rig publishes for a twin of its own shape, beside
/// its configuration: `response_memory_samples`, how many samples back
/// its response still depends on the drive, and `bin_edges`, the time
/// bins its readout averages, over the drive's samples, half-open, as
/// `start:end,start:end,…`. A trainer reads these instead of knowing rigs
/// by name.
pub fn publish_timing(
    h: &mut std::collections::BTreeMap<String, String>,
    memory_samples: usize,
    bins: &[(usize, usize)],
) {
    h.insert("response_memory_samples".into(), memory_samples.to_string());
    let edges: Vec<String> = bins.iter().map(|(a, b)| format!("{a}:{b}")).collect();
    h.insert("bin_edges".into(), edges.join(","));
}

/// How a time bin becomes one output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// Root mean square: the loudness of the bin (sign-free).
    Rms,
    /// Mean: the DC level of the bin (keeps the sign).
    Mean,
}

impl Readout {
    /// The name configs and hyperparameters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Readout::Rms => "rms",
            Readout::Mean => "mean",
        }
    }

    /// One value per bin of `trace` into `y`.
    pub fn apply(self, trace: &[f64], bins: &[(usize, usize)], y: &mut [f32]) {
        for (out, &(a, b)) in y.iter_mut().zip(bins) {
            let s = &trace[a..b];
            let n = s.len().max(1) as f64;
            let v = match self {
                Readout::Rms => (s.iter().map(|v| v * v).sum::<f64>() / n).sqrt(),
                Readout::Mean => s.iter().sum::<f64>() / n,
            };
            *out = v as f32;
        }
    }
}
