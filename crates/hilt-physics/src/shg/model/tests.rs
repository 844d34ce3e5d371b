//! Physics checks: each would fail on a plausible wrong model, not only on
//! a wrong shape.

use super::*;
use crate::forward;

fn nominal(cfg: ShgConfig) -> ShgModel {
    ShgModel::new(cfg, Variant::Nominal, 1).expect("valid config")
}

/// The true rig without drift or spectral noise: component mismatch,
/// power, shot and read noise only.
fn quiet_true(cfg: ShgConfig, seed: u64) -> ShgModel {
    ShgModel::new(
        ShgConfig {
            drift_sigma: 0.0,
            spectral_noise: 0.0,
            ..cfg
        },
        Variant::True,
        seed,
    )
    .expect("valid config")
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt(),
    )
}

#[test]
fn single_open_channel_k_gives_second_harmonic_only_at_pixel_2k() {
    let mut m = nominal(ShgConfig::default());
    let n = 64;
    let mut px = vec![0.0; 2 * n - 1];
    for k in [0, 17, 31, 32, 63] {
        let mut mask = vec![0.0; n];
        mask[k] = 1.0;
        m.shot_mask(&mask, &mut px);
        for (p, v) in px.iter().enumerate() {
            if p == 2 * k {
                assert!(*v > 0.0, "channel {k}: no SH at pixel {p}");
            } else {
                assert!(v.abs() < 1e-9, "channel {k}: light at pixel {p}: {v}");
            }
        }
    }
}

#[test]
fn two_open_channels_add_their_sum_frequency_with_the_cross_term() {
    // |E_k² |² at 2k, |E_l²|² at 2l, and |2 E_k E_l|² at k + l.
    let mut m = nominal(ShgConfig::default());
    let (k, l) = (20, 30);
    let mut px = vec![0.0; 127];
    let mut single = |c: usize| {
        let mut mask = vec![0.0; 64];
        mask[c] = 1.0;
        m.shot_mask(&mask, &mut px);
        px[2 * c]
    };
    let (ik, il) = (single(k), single(l));
    let mut mask = vec![0.0; 64];
    mask[k] = 1.0;
    mask[l] = 1.0;
    m.shot_mask(&mask, &mut px);
    let cross = px[k + l];
    assert!((cross - 4.0 * (ik * il).sqrt()).abs() < 1e-9 * cross);
}

#[test]
fn output_scales_with_laser_power_squared() {
    let x = ndarray::Array2::from_elem((3, 12), 0.7f32);
    let theta = ndarray::Array2::from_elem((1, 40), 0.4f32);
    let (y1, _) = forward(&mut nominal(ShgConfig::default()), x.view(), theta.view());
    let (y2, _) = forward(
        &mut nominal(ShgConfig {
            laser_power: 2.0,
            ..ShgConfig::default()
        }),
        x.view(),
        theta.view(),
    );
    for (a, b) in y1.iter().zip(&y2) {
        assert!((b / a - 4.0).abs() < 1e-4, "{b} / {a}");
    }
}

#[test]
fn nominal_output_is_quartic_in_the_mask() {
    let mut m = nominal(ShgConfig::default());
    let mask: Vec<f64> = (0..64)
        .map(|k| 0.3 + 0.6 * ((k * 13 % 7) as f64 / 6.0))
        .collect();
    let half: Vec<f64> = mask.iter().map(|v| v * 0.5).collect();
    let mut a = vec![0.0; 127];
    let mut b = vec![0.0; 127];
    m.shot_mask(&mask, &mut a);
    m.shot_mask(&half, &mut b);
    for (p, q) in a.iter().zip(&b) {
        assert!((q * 16.0 - p).abs() <= 1e-9 * p.max(1e-12));
    }
}

#[test]
fn nominal_is_noise_free_and_mirror_symmetric() {
    let mut m = nominal(ShgConfig::default());
    let mask: Vec<f64> = (0..64).map(|k| ((k * 29 % 11) as f64) / 10.0).collect();
    let mirrored: Vec<f64> = mask.iter().rev().copied().collect();
    let (mut a, mut b, mut c) = (vec![0.0; 127], vec![0.0; 127], vec![0.0; 127]);
    m.shot_mask(&mask, &mut a);
    m.shot_mask(&mask, &mut b);
    m.shot_mask(&mirrored, &mut c);
    assert_eq!(a, b, "nominal model must be noise-free");
    // Symmetric source, flat phase: mirroring the mask mirrors the spectrum.
    for p in 0..127 {
        assert!(
            (a[p] - c[126 - p]).abs() <= 1e-9 * a[p].max(1.0),
            "pixel {p}"
        );
    }
    // ...which the true model's chirp (β3) and registration error break.
    let mut t = ShgModel::new(
        ShgConfig {
            power_noise: 0.0,
            read_noise: 0.0,
            drift_sigma: 0.0,
            ..ShgConfig::default()
        },
        Variant::True,
        3,
    )
    .expect("valid");
    t.shot_mask(&mask, &mut a);
    t.shot_mask(&mirrored, &mut c);
    let asym: f64 = (0..127).map(|p| (a[p] - c[126 - p]).abs()).sum::<f64>();
    assert!(
        asym > 1e-3 * a.iter().sum::<f64>(),
        "true model unexpectedly symmetric"
    );
}

/// Relative std of the summed output of a bright mask, measured vs the
/// sum of power (2σ_P on SH), shot (1/√counts) and read + ADC noise.
fn check_bright_noise(power_noise: f64) {
    let cfg = ShgConfig {
        power_noise,
        ..ShgConfig::default()
    };
    let mut m = quiet_true(cfg.clone(), 11);
    let x = ndarray::Array2::from_elem((1, 12), 1.0f32);
    let theta = ndarray::Array2::from_elem((1, 40), 1.0f32);
    let totals: Vec<f64> = (0..4000)
        .map(|_| {
            forward(&mut m, x.view(), theta.view())
                .0
                .iter()
                .map(|v| f64::from(*v))
                .sum()
        })
        .collect();
    let (mean, std) = mean_std(&totals);
    let counts = mean * m.reference_total;
    let pixels = (m.bins[m.bins.len() - 1].1 - m.bins[0].0) as f64;
    let expected = ((2.0 * power_noise).powi(2)
        + 1.0 / counts
        + pixels * (cfg.read_noise.powi(2) + 1.0 / 12.0) / counts.powi(2))
    .sqrt();
    let rel = std / mean;
    assert!(
        (rel / expected - 1.0).abs() < 0.1,
        "relative std {rel}, expected {expected}"
    );
}

#[test]
fn shot_limited_noise_matches_photon_statistics() {
    check_bright_noise(0.0);
}

#[test]
fn power_limited_noise_is_twice_the_laser_noise() {
    check_bright_noise(0.01);
}

#[test]
fn dark_noise_is_read_noise_around_zero() {
    let cfg = ShgConfig::default();
    let mut m = quiet_true(cfg.clone(), 12);
    let x = ndarray::Array2::zeros((1, 12));
    let theta = ndarray::Array2::zeros((1, 40));
    let n = 5000;
    let bin0: Vec<f64> = (0..n)
        .map(|_| f64::from(forward(&mut m, x.view(), theta.view()).0[[0, 0]]))
        .collect();
    let (mean, std) = mean_std(&bin0);
    let (a, b) = m.bins[0];
    let expected =
        ((b - a) as f64 * (cfg.read_noise.powi(2) + 1.0 / 12.0)).sqrt() / m.reference_total;
    assert!(
        (std / expected - 1.0).abs() < 0.1,
        "dark std {std}, expected {expected}"
    );
    assert!(
        mean.abs() < 4.0 * std / (n as f64).sqrt(),
        "dark not subtracted: mean {mean}"
    );
}

#[test]
fn same_seed_same_rig_and_noise_other_seed_differs() {
    let x = ndarray::Array2::from_shape_fn((8, 12), |(i, j)| ((i * 12 + j) % 10) as f32 / 9.0);
    let theta = ndarray::Array2::from_elem((1, 40), 0.5f32);
    let run = |seed| {
        let mut m = ShgModel::new(ShgConfig::default(), Variant::True, seed).expect("valid");
        forward(&mut m, x.view(), theta.view()).0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn saturation_is_flagged_when_the_detector_fills() {
    let x = ndarray::Array2::from_elem((1, 12), 1.0f32);
    let theta = ndarray::Array2::from_elem((1, 40), 1.0f32);
    let mut ok = quiet_true(ShgConfig::default(), 1);
    assert_eq!(forward(&mut ok, x.view(), theta.view()).1, vec![false]);
    let mut hot = quiet_true(
        ShgConfig {
            laser_power: 1.5,
            ..ShgConfig::default()
        },
        1,
    );
    assert_eq!(forward(&mut hot, x.view(), theta.view()).1, vec![true]);
}

#[test]
fn applied_values_sit_on_the_mask_grid_inside_the_range() {
    let m = ShgModel::new(ShgConfig::default(), Variant::True, 1).expect("valid");
    let mut x: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
    let mut t = vec![1.0f32; 40];
    m.quantize(&mut x, &mut t);
    for v in x.iter().chain(&t) {
        assert!((0.0..=1.0).contains(v));
        assert!((v * 63.0 - (v * 63.0).round()).abs() < 1e-4);
    }
    assert_eq!(t[0], 1.0);
}

#[test]
fn laser_drift_is_an_ou_process_on_the_virtual_clock() {
    // τ of 10 shots, 4000 shots: the spread of the output over time is
    // that of P², i.e. 2σ of the OU drift (shot noise is ~0.1 % here).
    let cfg = ShgConfig {
        power_noise: 0.0,
        read_noise: 0.0,
        drift_sigma: 0.02,
        drift_tau_s: 0.05,
        ..ShgConfig::default()
    };
    let mut m = ShgModel::new(cfg, Variant::True, 2).expect("valid");
    let x = ndarray::Array2::from_elem((1, 12), 1.0f32);
    let theta = ndarray::Array2::from_elem((1, 40), 0.8f32);
    let totals: Vec<f64> = (0..4000)
        .map(|_| {
            forward(&mut m, x.view(), theta.view())
                .0
                .iter()
                .map(|v| f64::from(*v))
                .sum()
        })
        .collect();
    assert!(
        (m.clock() - 4000.0 * 0.005).abs() < 1e-9,
        "clock {}",
        m.clock()
    );
    let (mean, std) = mean_std(&totals);
    assert!(
        (std / mean / 0.04 - 1.0).abs() < 0.15,
        "relative drift {}",
        std / mean
    );
}

#[test]
fn configuration_errors_name_the_field() {
    let bad = ShgConfig {
        n_in: 40,
        replicate: 2,
        ..ShgConfig::default()
    };
    let err = ShgModel::new(bad, Variant::True, 0).unwrap_err();
    assert!(err.to_string().starts_with("n_in:"), "{err}");
    let bad = ShgConfig {
        bin_window: [0.6, 0.4],
        ..ShgConfig::default()
    };
    assert!(
        ShgModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string()
            .starts_with("bin_window")
    );
    // 64 channels are 127 pixels; 64 bins from the window's start at
    // pixel 64 would need 128: refused, not a panic while building.
    let bad = ShgConfig {
        n_channels: 64,
        bin_window: [0.5, 1.0],
        n_bins: 64,
        ..ShgConfig::default()
    };
    let err = ShgModel::new(bad, Variant::True, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("n_bins:") && err.contains("pixel 64"),
        "{err}"
    );
}

#[test]
fn registration_creeps_at_its_rate_and_moves_the_sh_spectrum() {
    // 1 channel per virtual second: 200 shots of 5 ms slide the source one
    // channel across the mask, so the SH of the open mask (pixel k + l)
    // moves two pixels, in the direction the seed drew. A narrow source and
    // a thin crystal, so neither the mask's edges nor phase matching pull
    // the centroid.
    let cfg = ShgConfig {
        source_fwhm: 0.2,
        crystal_mm: 0.0,
        spectral_noise: 0.0,
        power_noise: 0.0,
        read_noise: 0.0,
        drift_sigma: 0.0,
        registration_drift_ch_per_h: 3600.0,
        ..ShgConfig::default()
    };
    let mut m = ShgModel::new(cfg, Variant::True, 3).expect("valid");
    let open = vec![1.0; 64];
    let mut px = vec![0.0; 127];
    let centroid = |px: &[f64]| {
        px.iter()
            .enumerate()
            .map(|(i, v)| i as f64 * v)
            .sum::<f64>()
            / px.iter().sum::<f64>()
    };
    let r0 = m.registration();
    m.shot_mask(&open, &mut px);
    let c0 = centroid(&px);
    for _ in 0..199 {
        m.shot_mask(&open, &mut px);
    }
    let moved = m.registration() - r0;
    assert!(
        (moved.abs() - 1.0).abs() < 1e-9,
        "registration moved {moved}"
    );
    m.shot_mask(&open, &mut px);
    let dc = centroid(&px) - c0;
    assert!(
        dc * moved > 0.0 && (dc.abs() - 2.0).abs() < 0.05,
        "centroid moved {dc} px for {moved} channels"
    );
    // The nominal rig has no creep.
    let mut n = nominal(ShgConfig::default());
    for _ in 0..10 {
        n.shot_mask(&open, &mut px);
    }
    assert_eq!(n.registration(), 0.0);
}

#[test]
fn spectral_noise_enters_before_the_quartic_nonlinearity() {
    // One open channel: SH ∝ |E_k|⁴, so 2 % field noise is ≈ 8 % on the
    // SH (exact: the moments of (1 + σz)⁴), on top of shot noise. No
    // crosstalk, which would mix in the neighbours' independent noise; a
    // laser 8× brighter, so the lone channel gives ~2000 counts.
    let sigma = 0.02f64;
    let cfg = ShgConfig {
        crosstalk_channels: 0.0,
        power_noise: 0.0,
        read_noise: 0.0,
        drift_sigma: 0.0,
        registration_drift_ch_per_h: 0.0,
        spectral_noise: sigma,
        laser_power: 8.0,
        ..ShgConfig::default()
    };
    let mut m = ShgModel::new(cfg, Variant::True, 4).expect("valid");
    let mut mask = vec![0.0; 64];
    mask[32] = 1.0;
    let mut px = vec![0.0; 127];
    let totals: Vec<f64> = (0..4000)
        .map(|_| {
            m.shot_mask(&mask, &mut px);
            px.iter().sum()
        })
        .collect();
    let (mean, std) = mean_std(&totals);
    let s2 = sigma * sigma;
    let m4 = 1.0 + 6.0 * s2 + 3.0 * s2 * s2;
    let m8 = 1.0 + 28.0 * s2 + 210.0 * s2 * s2 + 420.0 * s2 * s2 * s2 + 105.0 * s2.powi(4);
    let expected = ((m8 - m4 * m4) / (m4 * m4) + 1.0 / mean).sqrt();
    assert!(
        (std / mean / expected - 1.0).abs() < 0.1,
        "relative std {}, expected {expected} ({mean} counts)",
        std / mean
    );
}
