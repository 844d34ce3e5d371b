use std::collections::BTreeMap;

use hilt_core::{Backend, DeviceSpec, Range};
use ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};

use super::*;

pub(crate) fn spec(n_in: usize, n_par: usize, n_out: usize) -> DeviceSpec {
    DeviceSpec {
        id: "synthetic".into(),
        kind: "test".into(),
        backend: Backend::Sim,
        model: "true".into(),
        seed: 0,
        n_in,
        input_range: Range::new(0.0, 1.0),
        n_par,
        param_range: Range::new(0.0, 1.0),
        n_out,
        input_unit: String::new(),
        param_unit: String::new(),
        output_unit: String::new(),
        limit_policy: Default::default(),
        max_batch: 1000,
        max_repeats: 4,
        seconds_per_sample: 0.0,
        hyperparameters: BTreeMap::new(),
        calibration_id: String::new(),
        firmware: Default::default(),
        encoding: None,
        input_step: 0.0,
        param_step: 0.0,
    }
}

/// A smooth nonlinear "device" with a little noise on two repeats.
pub(crate) fn synthetic(n: usize, seed: u64) -> TwinData {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, 3), |_| rng.random_range(0.0f32..1.0));
    let theta = Array2::from_shape_fn((n, 2), |_| rng.random_range(0.0f32..1.0));
    let mut y = Array3::zeros((2, n, 2));
    for r in 0..2 {
        for i in 0..n {
            let (a, b, c) = (x[(i, 0)], x[(i, 1)], x[(i, 2)]);
            let (p, q) = (theta[(i, 0)], theta[(i, 1)]);
            y[(r, i, 0)] = (a + p) * (b + q) + 0.01 * rng.random_range(-1.0f32..1.0);
            y[(r, i, 1)] = (3.0 * c * p).sin() + 0.01 * rng.random_range(-1.0f32..1.0);
        }
    }
    TwinData {
        spec: spec(3, 2, 2),
        x,
        theta,
        y,
        saturated: Array1::zeros(n),
    }
}

fn quick() -> FitOptions {
    FitOptions {
        hidden: vec![64, 64],
        epochs: Some(40),
        batch: 64,
        lr: Some(3e-3),
        quiet: true,
        ..FitOptions::default()
    }
}

#[test]
fn fits_a_smooth_device_and_reports_held_out_error_and_noise_floor() {
    let data = synthetic(3000, 1);
    let twin = fit(&data, &quick()).unwrap();
    let m = &twin.meta;
    assert_eq!((m.train_rows, m.heldout_rows), (2700, 300));
    assert!(
        m.heldout_rel_error < 0.1,
        "held-out error {}",
        m.heldout_rel_error
    );
    // ±0.01 uniform noise, mean of two: floor ≈ 0.0041/spread, well below 5 %.
    assert!(
        m.noise_floor_rel > 0.0 && m.noise_floor_rel < 0.05,
        "{}",
        m.noise_floor_rel
    );
    assert!(m.heldout_rel_error > m.noise_floor_rel);
}

#[test]
fn twin_and_data_files_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(200, 2);
    let npz = dir.path().join("d.npz");
    data.save(&npz).unwrap();
    let back = TwinData::load(&npz).unwrap();
    assert_eq!(back.x, data.x);
    assert_eq!(back.y, data.y);
    assert_eq!(back.spec, data.spec);

    let twin = fit(
        &data,
        &FitOptions {
            epochs: Some(2),
            ..quick()
        },
    )
    .unwrap();
    let st = dir.path().join("t.safetensors");
    twin.save(&st).unwrap();
    let again = Twin::load(&st).unwrap();
    let x = candle_core::Tensor::rand(0f32, 1.0, (5, 3), &candle_core::Device::Cpu).unwrap();
    let th = candle_core::Tensor::rand(0f32, 1.0, (1, 2), &candle_core::Device::Cpu).unwrap();
    let a = twin.forward(&x, &th).unwrap().to_vec2::<f32>().unwrap();
    let b = again.forward(&x, &th).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);
    assert_eq!(again.meta.spec, data.spec);
}

#[test]
fn foreign_or_truncated_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.safetensors");
    std::fs::write(&p, b"not a twin").unwrap();
    let e = Twin::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("junk.safetensors") && e.contains("hilt twin fit"),
        "{e}"
    );
    let q = dir.path().join("junk.npz");
    std::fs::write(&q, b"PK\x03\x04 broken").unwrap();
    let e = TwinData::load(&q).unwrap_err().to_string();
    assert!(e.contains("junk.npz") && e.contains("hilt collect"), "{e}");
    let e = fit(&synthetic(5, 0), &quick()).unwrap_err().to_string();
    assert!(e.contains("too few"), "{e}");
}

/// A time-domain "device" of the plate's shape: 8 superposed drive
/// elements held 3 samples each, a damped ring, RMS over 4 time bins.
fn ringing(n: usize, seed: u64) -> TwinData {
    let (n_in, hold, n_bins) = (8usize, 3usize, 4usize);
    let mut s = spec(n_in, n_in, n_bins);
    s.kind = "plate".into();
    s.input_range = Range::new(-1.0, 1.0);
    s.param_range = Range::new(-1.0, 1.0);
    s.hyperparameters
        .insert("hold_samples".into(), hold.to_string());
    s.hyperparameters.insert("readout".into(), "rms".into());
    // What a time-domain device publishes: its memory and its time bins
    // (the equal split of the drive's samples).
    let samples = n_in * hold;
    s.hyperparameters.insert(MEMORY_KEY.into(), "1024".into());
    let edges: Vec<String> = (0..n_bins)
        .map(|j| format!("{}:{}", j * samples / n_bins, (j + 1) * samples / n_bins))
        .collect();
    s.hyperparameters
        .insert(BIN_EDGES_KEY.into(), edges.join(","));
    s.encoding = Some(hilt_core::ControlEncoding {
        layout: "superpose".into(),
        input_index: (0..n_in as i32).collect(),
        param_index: (0..n_in as i32).collect(),
        input_scale: 1.0,
        control_min: -1.0,
        control_max: 1.0,
    });
    let kernel: Vec<f32> = (0..samples)
        .map(|t| (-(t as f32) / 6.0).exp() * (1.3 * t as f32).sin())
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, n_in), |_| rng.random_range(-0.5f32..0.5));
    let theta = Array2::from_shape_fn((n, n_in), |_| rng.random_range(-0.5f32..0.5));
    let mut y = Array3::zeros((2, n, n_bins));
    for i in 0..n {
        let drive: Vec<f32> = (0..samples)
            .map(|t| x[(i, t / hold)] + theta[(i, t / hold)])
            .collect();
        let trace: Vec<f32> = (0..samples)
            .map(|t| (0..=t).map(|s| kernel[t - s] * drive[s]).sum())
            .collect();
        for j in 0..n_bins {
            let (a, b) = (j * samples / n_bins, (j + 1) * samples / n_bins);
            let rms = (trace[a..b].iter().map(|v| v * v).sum::<f32>() / (b - a) as f32).sqrt();
            for r in 0..2 {
                y[(r, i, j)] = rms * (1.0 + 0.002 * rng.random_range(-1.0f32..1.0));
            }
        }
    }
    TwinData {
        spec: s,
        x,
        theta,
        y,
        saturated: Array1::zeros(n),
    }
}

#[test]
fn a_waveform_twin_learns_a_ringing_device_and_survives_the_file() {
    let data = ringing(2000, 3);
    let opt = FitOptions {
        epochs: Some(60),
        lr: Some(1e-2),
        ..quick()
    };
    let twin = fit(&data, &opt).unwrap();
    assert_eq!(twin.meta.kind, TwinKind::Waveform, "chosen for a plate");
    assert!(
        twin.meta.heldout_rel_error < 0.05,
        "held-out error {}",
        twin.meta.heldout_rel_error
    );
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("w.safetensors");
    twin.save(&st).unwrap();
    let again = Twin::load(&st).unwrap();
    let x = candle_core::Tensor::rand(-0.5f32, 0.5, (4, 8), &candle_core::Device::Cpu).unwrap();
    let th = candle_core::Tensor::rand(-0.5f32, 0.5, (1, 8), &candle_core::Device::Cpu).unwrap();
    let a = twin.forward(&x, &th).unwrap().to_vec2::<f32>().unwrap();
    let b = again.forward(&x, &th).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);
    // Asking for a waveform twin of a device without a waveform is refused.
    let e = fit(
        &synthetic(100, 0),
        &FitOptions {
            kind: Some(TwinKind::Waveform),
            ..quick()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--twin-kind waveform") && e.contains("no drive waveform"),
        "{e}"
    );
}
