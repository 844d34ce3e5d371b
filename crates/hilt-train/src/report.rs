//! A run directory: `metrics.json`, `epochs.csv`, `curve.png`,
//! `checkpoint.safetensors` (+ the twins it used).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio;
use crate::train::EpochRow;

/// The twin a run used for one device, as `metrics.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwinSummary {
    /// Where the twin file is.
    pub file: String,
    /// Its held-out relative error.
    pub heldout_rel_error: f32,
    /// The noise floor of its recording, in the same units.
    pub noise_floor_rel: f32,
    /// Rows recorded.
    pub samples: usize,
    /// Rig samples the recording cost (rows × repeats).
    #[serde(default)]
    pub rig_samples: u64,
}

/// A run's `metrics.json`: enough to compare runs without their logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    /// Training method.
    pub method: String,
    /// Task.
    pub task: String,
    /// The devices of the network's physical layers, joined by '+'.
    pub device: String,
    /// Training seed.
    pub seed: u64,
    /// Test accuracy measured on the devices after training.
    pub test_accuracy: f64,
    /// Train accuracy measured on the devices after training.
    pub train_accuracy: f64,
    /// What the twins predicted for the final network's test accuracy
    /// (`null` for methods without twins).
    pub twin_test_accuracy: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// The whole run, including twin collection and fitting when this run
    /// did them (`hilt demo` fits once, before both runs).
    pub wall_seconds: f64,
    /// Training and evaluation only.
    pub train_wall_seconds: f64,
    /// Share of the training phase's wall time the rigs spent measuring.
    pub device_busy_fraction: f64,
    /// Rig samples spent learning: the initialisation and the training
    /// steps (PAT's and in-silico's twins are `twin_samples`).
    pub device_samples_train: u64,
    /// Rig samples spent scoring: the test split after every epoch and
    /// both splits at the end.
    pub device_samples_eval: u64,
    /// Rig samples recorded to fit the twins the run used (0 for methods
    /// without twins).
    pub twin_samples: u64,
    /// Worst held-out relative error of the twins used.
    pub twin_heldout_rel_error: f32,
    /// The twins used, by device.
    pub twins: BTreeMap<String, TwinSummary>,
    /// Layers run on a device.
    pub physical_layers: usize,
    /// Trained values on the devices (θ).
    pub trainable_physical: usize,
    /// Trained values in digital layers.
    pub trainable_digital: usize,
    /// How the data was split and subsampled.
    pub split: String,
    /// Training examples.
    pub n_train: usize,
    /// Test examples.
    pub n_test: usize,
    /// The daemon of `--server`.
    pub server: String,
    /// Every daemon the run's devices sit on (`--server` first, then
    /// those named by `ID@URL`).
    #[serde(default)]
    pub servers: Vec<String>,
    /// The drift sentinels' settings, when the run had them.
    #[serde(default)]
    pub sentinel: Option<crate::train::SentinelOptions>,
    /// Every sentinel that fired, with the refit it caused.
    #[serde(default)]
    pub drift_events: Vec<crate::train::DriftEvent>,
    /// The trainer's version.
    pub hilt_version: String,
}

impl Metrics {
    /// A `metrics.json` as written, for tools that compare runs.
    pub fn load(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&s).map_err(|e| Error::data(path, e.to_string()))
    }
}

/// `metrics.json` in `dir`, atomically.
pub fn write_metrics(dir: &Path, m: &Metrics) -> Result<()> {
    let json = serde_json::to_vec_pretty(m).map_err(|e| Error::invalid(e.to_string()))?;
    fsio::write_bytes(&dir.join("metrics.json"), &json)
}

/// `epochs.csv` in `dir`, rewritten whole (every epoch).
pub fn write_epochs(dir: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| Error::invalid(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::invalid(e.to_string()))?;
    fsio::write_bytes(&dir.join("epochs.csv"), &bytes)
}

/// Fonts tried for the plot's labels; without one the curves are drawn
/// unlabelled rather than not at all.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    leaked,
                )
                .is_ok()
            })
        })
    })
}

/// A plot drawn by `draw` into a temporary file and moved to `path`, so
/// a failed plot leaves no half-written image.
fn write_plot(
    path: &Path,
    draw: impl Fn(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    fsio::write_atomic(path, |tmp| {
        draw(tmp).map_err(|e| Error::data(tmp, format!("plot: {e}")))
    })
}

/// A curve's mark in the legend: a short line in its colour.
fn legend_line(
    color: plotters::style::RGBColor,
) -> impl Fn((i32, i32)) -> plotters::element::PathElement<(i32, i32)> {
    move |(x, y)| plotters::element::PathElement::new(vec![(x, y), (x + 20, y)], color)
}

/// The curves' names, boxed in the lower right: the same in every plot.
fn legend<'a, DB: plotters::prelude::DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut plotters::chart::ChartContext<'a, DB, CT>,
) -> std::result::Result<(), plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>> {
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// A curve of the plot: label, colour, value per epoch (none: not drawn).
type Series = (
    &'static str,
    plotters::style::RGBColor,
    fn(&EpochRow) -> Option<f64>,
);

/// Training curve: train and test accuracy (and the twins' view of the
/// test accuracy) against epoch.
pub fn plot_curve(path: &Path, title: &str, rows: &[EpochRow]) -> Result<()> {
    use plotters::prelude::*;
    let labelled = register_font();
    let n = rows.len().max(2);
    let draw = |tmp: &Path| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(tmp, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if labelled {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(50);
        }
        let mut chart = builder.build_cartesian_2d(1f64..n as f64, 0f64..100f64)?;
        let mut mesh = chart.configure_mesh();
        if labelled {
            mesh.x_desc("epoch").y_desc("accuracy (%)");
        }
        mesh.draw()?;
        let series: [Series; 3] = [
            ("train", BLUE, |r| Some(r.train_accuracy)),
            ("test (device)", RED, |r| Some(r.test_accuracy)),
            ("test (twin)", RGBColor(120, 120, 120), |r| {
                r.twin_test_accuracy
            }),
        ];
        for (name, color, f) in series {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| f(r).map(|v| (r.epoch as f64, 100.0 * v)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let s = chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
            if labelled {
                s.label(name).legend(legend_line(color));
            }
        }
        if labelled {
            legend(&mut chart)?;
        }
        root.present()?;
        Ok(())
    };
    write_plot(path, draw)
}

/// One run's curve for [`plot_against_samples`].
#[derive(Debug, Clone)]
pub struct SampleCurve {
    /// The method, as the legend names it.
    pub label: String,
    /// (rig samples spent learning, test accuracy) after each epoch.
    pub points: Vec<(u64, f64)>,
}

/// A sample count for an axis label: 20k, 1.5M.
fn short_count(v: f64) -> String {
    let (x, unit) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = if x.fract().abs() < 1e-9 || x.abs() >= 10.0 {
        0
    } else {
        1
    };
    format!("{x:.digits$}{unit}")
}

/// Test accuracy against the rig samples each method spent to get there
/// (log scale), one line per method; a method that spent none (the digital
/// baseline) is drawn as a dashed level across the plot.
pub fn plot_against_samples(path: &Path, title: &str, curves: &[SampleCurve]) -> Result<()> {
    use plotters::prelude::*;
    let labelled = register_font();
    let spent = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .filter(|&s| s > 0);
    let lo = spent.clone().min().unwrap_or(1).max(1) as f64 / 2.0;
    let hi = (spent.max().unwrap_or(10) as f64 * 2.0).max(lo * 10.0);
    let palette = [
        RGBColor(200, 30, 30),
        RGBColor(30, 90, 200),
        RGBColor(20, 150, 60),
        RGBColor(200, 120, 0),
        RGBColor(110, 110, 110),
        RGBColor(140, 40, 160),
    ];
    let draw = |tmp: &Path| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(tmp, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if labelled {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(50);
        }
        let mut chart = builder.build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)?;
        let mut mesh = chart.configure_mesh();
        // A log axis over less than two decades gets a label at every
        // 1–9 × 10^k: few of them, in a short form, stay readable.
        mesh.x_labels(6).x_label_formatter(&|v| short_count(*v));
        if labelled {
            mesh.x_desc("rig samples spent learning (twin recording included)")
                .y_desc("test accuracy on the device (%)");
        }
        mesh.draw()?;
        for (k, c) in curves.iter().enumerate() {
            let color = palette[k % palette.len()];
            let flat = c.points.iter().all(|p| p.0 == 0);
            let pts: Vec<(f64, f64)> = if flat {
                let acc = c.points.last().map_or(0.0, |p| 100.0 * p.1);
                vec![(lo, acc), (hi, acc)]
            } else {
                c.points
                    .iter()
                    .filter(|p| p.0 > 0)
                    .map(|p| (p.0 as f64, 100.0 * p.1))
                    .collect()
            };
            let style = color.stroke_width(2);
            let s = if flat {
                chart.draw_series(DashedLineSeries::new(pts, 8, 6, style))?
            } else {
                chart.draw_series(LineSeries::new(pts, style))?
            };
            if labelled {
                s.label(c.label.clone()).legend(legend_line(color));
            }
        }
        if labelled {
            legend(&mut chart)?;
        }
        root.present()?;
        Ok(())
    };
    write_plot(path, draw)
}

#[cfg(test)]
mod tests {
    use super::short_count;

    #[test]
    fn sample_counts_are_labelled_short() {
        assert_eq!(short_count(500.0), "500");
        assert_eq!(short_count(2_500.0), "2.5k");
        assert_eq!(short_count(20_000.0), "20k");
        assert_eq!(short_count(1_500_000.0), "1.5M");
        assert_eq!(short_count(3_000_000.0), "3M");
    }
}
