//! Physics checks: each would fail on a plausible wrong model.

use rustfft::{FftPlanner, num_complex::Complex};

use super::*;
use crate::forward;

fn quiet(cfg: PlateConfig) -> PlateConfig {
    PlateConfig {
        latency_jitter: 0,
        temp_sigma_k: 0.0,
        snr_db: 300.0,
        ..cfg
    }
}

/// An impulse-like drive: one element on, then `len` elements of silence.
fn click(len: usize) -> Vec<f64> {
    let mut c = vec![0.0; len];
    c[0] = 1.0;
    c
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn impulse_response_rings_at_the_configured_mode_frequencies() {
    // Q at the top of the physical range (300), so that the split pair and
    // the close high modes are separate lines.
    let cfg = PlateConfig {
        q: 300.0,
        ..PlateConfig::default()
    };
    let m = PlateModel::new(cfg, Variant::Nominal, 5).expect("valid");
    let fs = m.cfg.sample_rate_hz;
    let mut trace = Vec::new();
    m.respond(&click(4096), 1.0, 0.0, &mut trace);
    let n = 8192;
    let start = m.delay_samples();
    let mut buf: Vec<Complex<f64>> = trace[start..start + n]
        .iter()
        .map(|&v| Complex::new(v, 0.0))
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let mag: Vec<f64> = buf[..n / 2].iter().map(|c| c.norm()).collect();
    let df = fs / n as f64;
    let freqs = m.mode_frequencies();
    let mut checked = 0;
    for (i, &f) in freqs.iter().enumerate() {
        // Modes within a few linewidths (f/Q) of another share one skirt: a
        // weak one can hide in it, or cancel it into an antiresonance.
        let linewidth = f / m.mode_q()[i];
        if freqs
            .iter()
            .enumerate()
            .any(|(j, &g)| j != i && (g - f).abs() < 5.0 * linewidth.max(df))
        {
            continue;
        }
        let k = (f / df).round() as usize;
        let peak = (k - 4..=k + 4)
            .max_by(|&a, &b| mag[a].total_cmp(&mag[b]))
            .expect("non-empty");
        assert!(
            mag[peak] > mag[peak - 1] && mag[peak] > mag[peak + 1],
            "no peak near mode {f:.1} Hz: {:?} (modes {freqs:?})",
            &mag[k - 4..=k + 4]
        );
        assert!(
            (peak as f64 * df - f).abs() <= df,
            "mode {f:.1} Hz: peak at {:.1} Hz (bin {df:.2} Hz)",
            peak as f64 * df
        );
        checked += 1;
    }
    assert!(
        checked >= freqs.len() - 2,
        "only {checked} modes resolvable"
    );
}

#[test]
fn a_lone_mode_decays_at_its_q() {
    let cfg = PlateConfig {
        lambda2: vec![20.0],
        lambda2_spread: 0.0,
        q: 40.0,
        ..PlateConfig::default()
    };
    let m = PlateModel::new(cfg, Variant::Nominal, 1).expect("valid");
    let f = m.mode_frequencies()[0];
    let fs = m.cfg.sample_rate_hz;
    let mut trace = Vec::new();
    m.respond(&click(2048), 1.0, 0.0, &mut trace);
    // Envelope e^{−πft/Q}: compare whole periods 2 ms and 6 ms in.
    let period = (fs / f).round() as usize * 10;
    let at = |t_s: f64| {
        let s = m.delay_samples() + (t_s * fs) as usize;
        rms(&trace[s..s + period])
    };
    let dt = 0.004;
    let measured = at(0.006) / at(0.002);
    let expected = (-std::f64::consts::PI * f * dt / 40.0).exp();
    assert!(
        (measured / expected - 1.0).abs() < 0.02,
        "decay {measured} over {dt} s, expected {expected} (f = {f:.0} Hz, Q = 40)"
    );
}

fn superposition_error(variant: Variant) -> f64 {
    let m = PlateModel::new(quiet(PlateConfig::default()), variant, 9).expect("valid");
    let n = m.cfg.drive.n_elements();
    // Drives with a DC part, as an image superposed on θ has: the coil
    // sits off centre, where Bl(z) and k(z) bend.
    let a: Vec<f64> = (0..n)
        .map(|k| 0.3 + 0.2 * ((k * 37 % 11) as f64 / 5.0 - 1.0))
        .collect();
    let b: Vec<f64> = (0..n)
        .map(|k| 0.3 + 0.2 * ((k * 53 % 7) as f64 / 3.0 - 1.0))
        .collect();
    let ab: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let (mut ra, mut rb, mut rab) = (Vec::new(), Vec::new(), Vec::new());
    m.respond(&a, 1.0, 0.0, &mut ra);
    m.respond(&b, 1.0, 0.0, &mut rb);
    m.respond(&ab, 1.0, 0.0, &mut rab);
    let diff: Vec<f64> = rab
        .iter()
        .zip(ra.iter().zip(&rb))
        .map(|(s, (p, q))| s - p - q)
        .collect();
    rms(&diff) / rms(&rab)
}

#[test]
fn the_nominal_plate_is_linear_and_the_true_one_is_not() {
    let nominal = superposition_error(Variant::Nominal);
    let truth = superposition_error(Variant::True);
    assert!(nominal < 1e-12, "nominal superposition error {nominal}");
    assert!(truth > 1e-3, "true superposition error only {truth}");
}

#[test]
fn same_seed_same_plate_and_noise_other_seed_differs() {
    let x = ndarray::Array2::from_shape_fn((4, 196), |(i, j)| ((i * 196 + j) % 17) as f32 / 16.0);
    let theta = ndarray::Array2::from_elem((1, 196), -0.2f32);
    let run = |seed| {
        let mut m = PlateModel::new(PlateConfig::default(), Variant::True, seed).expect("valid");
        forward(&mut m, x.view(), theta.view()).0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn noise_sits_at_the_configured_snr() {
    // The calibration drive's response is 1 output unit RMS; with 40 dB
    // SNR the spread of one bin over repeats is 1 % / √(bin samples) of
    // the RMS of the noise, measured around the mean.
    let cfg = PlateConfig {
        snr_db: 40.0,
        latency_jitter: 0,
        temp_sigma_k: 0.0,
        coil_heating: 0.0,
        n_bins: 1,
        readout: crate::waveform::Readout::Mean,
        ..PlateConfig::default()
    };
    let mut m = PlateModel::new(cfg, Variant::True, 2).expect("valid");
    let x = ndarray::Array2::zeros((1, 196));
    let theta = ndarray::Array2::zeros((1, 196));
    let v: Vec<f64> = (0..2000)
        .map(|_| f64::from(forward(&mut m, x.view(), theta.view()).0[[0, 0]]))
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    let expected = 0.01 / (m.cfg.drive_samples() as f64).sqrt();
    assert!(
        (sd / expected - 1.0).abs() < 0.1,
        "sd {sd}, expected {expected}"
    );
}

#[test]
fn a_hot_coil_plays_quieter() {
    // Continuous drive (no guard) with a 1 s thermal time constant: after
    // ~3 s the winding is hot and its resistance up by `coil_heating`.
    let cfg = quiet(PlateConfig {
        guard_s: 0.0,
        coil_heat_tau_s: 1.0,
        coil_heating: 0.05,
        ..PlateConfig::default()
    });
    let mut m = PlateModel::new(cfg, Variant::True, 3).expect("valid");
    let x = ndarray::Array2::from_shape_fn((1, 196), |(_, j)| (j % 5) as f32 / 4.0);
    let theta = ndarray::Array2::zeros((1, 196));
    let total = |m: &mut PlateModel| -> f64 {
        forward(m, x.view(), theta.view())
            .0
            .iter()
            .map(|v| f64::from(*v))
            .sum()
    };
    let cold = total(&mut m);
    for _ in 0..300 {
        total(&mut m);
    }
    let hot = total(&mut m);
    // The winding's inductance carries part of the impedance at audio
    // frequencies, so the loss is less than the resistance rise: compare
    // with the same drive through a winding at full heat.
    let mut controls = vec![0.0; 196];
    m.map.compose(
        x.as_slice().unwrap(),
        theta.as_slice().unwrap(),
        &mut controls,
    );
    let level = |heat| {
        let mut tr = Vec::new();
        m.respond(&controls, 1.0, heat, &mut tr);
        rms(&tr)
    };
    let expected = level(1.0) / level(0.0);
    assert!(
        expected < 0.99 && expected > 1.0 / 1.05,
        "full-heat ratio {expected}"
    );
    assert!(
        (hot / cold / expected - 1.0).abs() < 0.005,
        "hot/cold {}, expected {expected}",
        hot / cold
    );
}

#[test]
fn any_latency_jitter_keeps_the_window_inside_the_recording() {
    for align in [true, false] {
        let cfg = PlateConfig {
            latency_jitter: 12,
            align_loopback: align,
            mic_distance_mm: 0.0,
            ..PlateConfig::default()
        };
        let mut m = PlateModel::new(cfg, Variant::True, 1).expect("valid");
        let x = ndarray::Array2::zeros((50, 196));
        let theta = ndarray::Array2::from_elem((1, 196), 0.1f32);
        let (y, _) = forward(&mut m, x.view(), theta.view());
        assert!(y.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn configuration_errors_name_the_field() {
    let bad = PlateConfig {
        mic_band_hz: [100.0, 30_000.0],
        ..PlateConfig::default()
    };
    assert!(
        PlateModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string()
            .starts_with("mic_band_hz")
    );
    let bad = PlateConfig {
        lambda2: vec![200.0],
        ..PlateConfig::default()
    };
    assert!(
        PlateModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string()
            .starts_with("lambda2")
    );
}

#[test]
fn the_loopback_channel_takes_the_latency_jitter_out() {
    // Repeats of one drive: with alignment they differ by the room noise
    // only; without, a one-sample shift of a kHz ring moves every bin.
    let spread = |align: bool| {
        let cfg = PlateConfig {
            align_loopback: align,
            temp_sigma_k: 0.0,
            coil_heating: 0.0,
            n_bins: 196,
            ..PlateConfig::default()
        };
        let mut m = PlateModel::new(cfg, Variant::True, 8).expect("valid");
        let x = ndarray::Array2::from_shape_fn((1, 196), |(_, j)| ((j * 31) % 9) as f32 / 8.0);
        let theta = ndarray::Array2::from_elem((1, 196), -0.3f32);
        crate::waveform::testing::repeat_spread(&mut m, &x, &theta, 20)
    };
    let (aligned, raw) = (spread(true), spread(false));
    assert!(aligned < 0.01, "aligned repeats differ by {aligned}");
    assert!(raw > 5.0 * aligned, "jitter without alignment only {raw}");
}
