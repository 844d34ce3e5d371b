//! Physics checks: each would fail on a plausible wrong model.

use super::*;
use crate::forward;

fn quiet(cfg: CircuitConfig) -> CircuitConfig {
    CircuitConfig {
        adc_noise_v: 0.0,
        ao_noise_v: 0.0,
        trigger_jitter: 0,
        temp_sigma_k: 0.0,
        supply_droop: 0.0,
        ..cfg
    }
}

/// The DC operating point, solved independently of the integrator:
/// V = (R + R_b)·i_B + n·V_T·ln(i_B·β/I_S + 1), by bisection on i_B.
fn analytic_base_current(p: &Components, v: f64) -> f64 {
    let f = |ib: f64| (p.r + p.rb) * ib + p.n_vt * (ib * p.beta / p.i_s + 1.0).ln() - v;
    let (mut lo, mut hi) = (0.0, v / (p.r + p.rb).max(1.0));
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

fn settle(m: &CircuitModel, v: f64) -> f64 {
    // 40 envelope time constants (2L/R = 20 µs) of constant drive.
    let mut out = Vec::new();
    m.respond(&vec![v; 800], 0.0, &mut out);
    *out.last().expect("non-empty")
}

#[test]
fn dc_operating_point_matches_the_analytic_value() {
    for (variant, seed) in [(Variant::Nominal, 0), (Variant::True, 4)] {
        let m = CircuitModel::new(quiet(CircuitConfig::default()), variant, seed).expect("valid");
        let p = m.components().clone();
        for v in [0.7, 1.0, 1.5] {
            let ib = analytic_base_current(&p, v);
            let expected = p.collector_drop(ib, p.vcc);
            let got = settle(&m, v);
            assert!(
                (got - expected).abs() < 1e-6 + 1e-4 * expected,
                "{variant:?} at {v} V: collector drop {got} V, analytic {expected} V"
            );
        }
    }
}

#[test]
fn the_junction_rectifies() {
    let m = CircuitModel::new(quiet(CircuitConfig::default()), Variant::True, 1).expect("valid");
    let up = settle(&m, 1.5);
    let down = settle(&m, -1.5);
    assert!(up > 1.0, "forward drive: drop {up} V");
    assert!(down.abs() < 1e-6, "reverse drive: drop {down} V");
    // And the capacitor node is clamped near a diode drop one way only.
    let cfg = CircuitConfig {
        probe: Probe::Capacitor,
        ..quiet(CircuitConfig::default())
    };
    let m = CircuitModel::new(cfg, Variant::Nominal, 1).expect("valid");
    let (pos, neg) = (settle(&m, 1.5), settle(&m, -1.5));
    assert!(
        pos < 0.9 && (neg + 1.5).abs() < 1e-6,
        "v_C at ±1.5 V: {pos}, {neg}"
    );
}

fn drive_response(substeps: usize) -> Vec<f32> {
    let cfg = CircuitConfig {
        substeps,
        ..quiet(CircuitConfig::default())
    };
    let mut m = CircuitModel::new(cfg, Variant::True, 2).expect("valid");
    let x = ndarray::Array2::from_shape_fn((1, 196), |(_, j)| ((j * 37) % 11) as f32 / 10.0);
    let theta = ndarray::Array2::from_elem((1, 196), -0.3f32);
    forward(&mut m, x.view(), theta.view())
        .0
        .into_raw_vec_and_offset()
        .0
}

#[test]
fn halving_the_step_changes_the_output_by_less_than_a_millivolt() {
    let coarse = drive_response(10);
    let fine = drive_response(20);
    let worst = coarse
        .iter()
        .zip(&fine)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = fine.iter().copied().fold(0.0f32, f32::max);
    assert!(
        scale > 0.1,
        "the drive should switch the transistor on ({scale} V)"
    );
    // The ADC's own noise is 1 mV: the integrator stays below it.
    assert!(worst < 1e-3, "step halving moved a bin by {worst} V");
}

#[test]
fn same_seed_same_circuit_and_noise_other_seed_differs() {
    let x = ndarray::Array2::from_shape_fn((3, 196), |(i, j)| ((i * 196 + j) % 17) as f32 / 16.0);
    let theta = ndarray::Array2::from_elem((1, 196), 0.1f32);
    let run = |seed| {
        let mut m =
            CircuitModel::new(CircuitConfig::default(), Variant::True, seed).expect("valid");
        forward(&mut m, x.view(), theta.view()).0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn a_warmer_junction_conducts_like_more_drive() {
    // −2 mV/K: 10 K warmer shifts V_BE by −20 mV, as 20 mV more drive
    // would (in the active region, where R·i_B is small).
    let m = CircuitModel::new(quiet(CircuitConfig::default()), Variant::Nominal, 0).expect("valid");
    let (mut warm, mut more) = (Vec::new(), Vec::new());
    m.respond(&[0.66; 800], -0.02, &mut warm);
    m.respond(&[0.68; 800], 0.0, &mut more);
    let (w, c) = (warm[799], more[799]);
    assert!(w > 0.01 && w < 4.0, "not in the active region: {w} V");
    assert!(
        (w / c - 1.0).abs() < 0.05,
        "warm {w} V vs 20 mV more drive {c} V"
    );
    let mut cool = Vec::new();
    m.respond(&[0.66; 800], 0.0, &mut cool);
    assert!(cool[799] < 0.5 * w, "cool {} V vs warm {w} V", cool[799]);
}

#[test]
fn configuration_errors_name_the_field() {
    let bad = CircuitConfig {
        substeps: 0,
        ..CircuitConfig::default()
    };
    assert!(
        CircuitModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string()
            .starts_with("substeps")
    );
    let bad = CircuitConfig {
        trigger_jitter: 5000,
        ..CircuitConfig::default()
    };
    assert!(
        CircuitModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string()
            .starts_with("trigger_jitter")
    );
    for (bad, field) in [
        (
            CircuitConfig {
                supply_droop: 0.97,
                ..CircuitConfig::default()
            },
            "supply_droop",
        ),
        (
            CircuitConfig {
                tolerance: 0.4,
                ..CircuitConfig::default()
            },
            "tolerance",
        ),
    ] {
        let e = CircuitModel::new(bad, Variant::True, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(field), "{e}");
    }
}

/// The repeat spread of one drive over 196 bins of one element each.
fn repeat_spread(cfg: CircuitConfig) -> f32 {
    let mut m = CircuitModel::new(
        CircuitConfig {
            n_bins: 196,
            temp_sigma_k: 0.0,
            supply_droop: 0.0,
            ..cfg
        },
        Variant::True,
        8,
    )
    .expect("valid");
    let x = ndarray::Array2::from_shape_fn((1, 196), |(_, j)| ((j * 31) % 9) as f32 / 8.0);
    let theta = ndarray::Array2::from_elem((1, 196), -0.2f32);
    crate::waveform::testing::repeat_spread(&mut m, &x, &theta, 20)
}

#[test]
fn the_loopback_channel_takes_the_trigger_jitter_out() {
    let aligned = repeat_spread(CircuitConfig::default());
    let raw = repeat_spread(CircuitConfig {
        align_loopback: false,
        ..CircuitConfig::default()
    });
    assert!(aligned < 0.01, "aligned repeats differ by {aligned}");
    assert!(raw > 5.0 * aligned, "jitter without alignment only {raw}");
}

#[test]
fn any_trigger_jitter_keeps_the_window_inside_the_recording() {
    for align in [true, false] {
        let cfg = CircuitConfig {
            trigger_jitter: 12,
            align_loopback: align,
            ..CircuitConfig::default()
        };
        let mut m = CircuitModel::new(cfg, Variant::True, 1).expect("valid");
        // A flat drive gives the loopback nothing to lock onto.
        let x = ndarray::Array2::zeros((50, 196));
        let theta = ndarray::Array2::from_elem((1, 196), 0.1f32);
        let (y, _) = forward(&mut m, x.view(), theta.view());
        assert!(y.iter().all(|v| v.is_finite()));
    }
}

/// A sweep on several threads, each stepping its shots' circuits side by
/// side (full and partial groups of `LANES`), measures what shots one
/// after another do: same values, same saturation, same clock, and the
/// model continues from the same state (the next shot agrees too). 40
/// rows: more than a chunk.
#[test]
fn a_threaded_sweep_is_the_serial_shots_bit_for_bit() {
    let (rows, n_in) = (40, 196);
    let x: Vec<f32> = (0..rows * n_in)
        .map(|k| ((k * 37) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let theta: Vec<f32> = (0..rows * n_in)
        .map(|k| ((k * 11) % 7) as f32 / 7.0 - 0.5)
        .collect();
    let cfg = CircuitConfig::default();
    let mut serial = CircuitModel::new(cfg.clone(), Variant::True, 3).expect("valid");
    let mut threaded = CircuitModel::new(cfg, Variant::True, 3).expect("valid");
    threaded.set_threads(3);
    let n_out = serial.n_out();
    let (mut y1, mut s1, mut c1) = (vec![0.0; rows * n_out], vec![false; rows], Vec::new());
    for i in 0..rows {
        let start = serial.clock();
        s1[i] = serial.shot(
            &x[i * n_in..(i + 1) * n_in],
            &theta[i * n_in..(i + 1) * n_in],
            &mut y1[i * n_out..(i + 1) * n_out],
        );
        c1.push((start, serial.clock()));
    }
    let (mut y2, mut s2, mut c2) = (
        vec![0.0; rows * n_out],
        vec![false; rows],
        vec![(0.0, 0.0); rows],
    );
    threaded.sweep(&x, &theta, &mut y2, &mut s2, &mut c2);
    assert_eq!(y1, y2);
    assert_eq!((s1, c1), (s2, c2));
    let (mut a, mut b) = (vec![0.0; n_out], vec![0.0; n_out]);
    serial.shot(&x[..n_in], &theta[..n_in], &mut a);
    threaded.shot(&x[..n_in], &theta[..n_in], &mut b);
    assert_eq!(a, b);
}
