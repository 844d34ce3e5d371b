//! Simulation speed of the plate and circuit models at their default
//! settings (196-element MNIST drive, superposed θ). The simulator must
//! never be the slow part of a run: at these settings the real plate plays
//! ~27 samples/s (16.3 ms of drive + 20 ms guard) and the real circuit
//! ~850 samples/s (0.98 ms + 0.2 ms). After criterion's figures, the
//! circuit's speed on one thread is printed as a multiple of the board's.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use hilt_physics::circuit::{CircuitConfig, CircuitModel, Integrator, Point, Probe, State};
use hilt_physics::plate::{PlateConfig, PlateModel};
use hilt_physics::{PhysicalModel, Variant, forward};
use ndarray::Array2;

const BATCH: usize = 32;

fn run<M: PhysicalModel>(
    c: &mut Criterion,
    name: &str,
    variants: &[Variant],
    make: impl Fn(Variant) -> M,
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    for &variant in variants {
        let mut model = make(variant);
        let (x, theta) = inputs(&model);
        group.bench_function(variant.as_str(), |b| {
            b.iter(|| black_box(forward(&mut model, x.view(), theta.view())))
        });
    }
    group.finish();
}

/// The batch every figure here is measured on: MNIST-like inputs in
/// [0, 1], one shared θ of −0.2.
fn inputs<M: PhysicalModel>(model: &M) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((BATCH, model.n_in()), |(i, j)| {
        ((i * 7 + j) % 13) as f32 / 12.0
    });
    (x, Array2::from_elem((1, model.n_par()), -0.2f32))
}

const BOTH: [Variant; 2] = [Variant::Nominal, Variant::True];

fn plate(c: &mut Criterion) {
    run(c, "plate_196_batch32", &BOTH, |v| {
        PlateModel::new(PlateConfig::default(), v, 1).expect("default config")
    });
    // The class readout of the MNIST setups (hiltd's embedded default): a 1960-element
    // drive (the image once per class), 10 bins. The real plate plays it
    // in 10 × 16.3 ms + 20 ms.
    run(c, "plate_1960_batch32", &[Variant::True], |v| {
        let mut cfg = PlateConfig::default();
        cfg.drive.n_in = 1960;
        cfg.n_bins = 10;
        PlateModel::new(cfg, v, 1).expect("class readout")
    });
}

fn circuit(c: &mut Criterion) {
    // One thread: the speed of one rig's simulator on a busy machine.
    run(c, "circuit_196_batch32", &BOTH, |v| {
        let mut m = CircuitModel::new(CircuitConfig::default(), v, 1).expect("default config");
        m.set_threads(1);
        m
    });
    // The class readout (capacitor probe, as hiltd's embedded default serves it): the
    // real board plays 10 × 0.98 ms + 0.2 ms.
    // Its transients on one thread, then on all of the machine's (the
    // sweep's default), in the same run.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, n) in [
        ("circuit_1960_batch32_1_thread", 1),
        ("circuit_1960_batch32_all_threads", threads),
    ] {
        run(c, name, &[Variant::True], |v| {
            let mut cfg = CircuitConfig::default();
            cfg.drive.n_in = 1960;
            cfg.n_bins = 10;
            cfg.probe = Probe::Capacitor;
            let mut m = CircuitModel::new(cfg, v, 1).expect("class readout");
            m.set_threads(n);
            m
        });
    }
}

/// The circuit's integrator alone, against the plainly converged 3×3
/// Newton step in the same run: one 196-element drive (980
/// ADC samples of 10 steps) of the true model's parts.
fn circuit_integrator(c: &mut Criterion) {
    let model = CircuitModel::new(CircuitConfig::default(), Variant::True, 1).expect("default");
    let parts = model.components().clone();
    let h = 1e-7;
    let volts: Vec<f64> = (0..980)
        .map(|k| 2.0 * (((k / 5) * 7 % 13) as f64 / 12.0 - 0.2))
        .collect();
    let mut group = c.benchmark_group("circuit_integrator_980_samples");
    group.throughput(Throughput::Elements(1));
    group.bench_function("step_exact", |b| {
        b.iter(|| {
            let mut s: State = [0.0; 3];
            for &u in &volts {
                let mut f = parts.rates_at(&s, u, 0.0);
                for _ in 0..10 {
                    parts.step_exact(&mut s, &mut f, u, 0.0, h);
                }
            }
            black_box(s)
        })
    });
    group.bench_function("integrator", |b| {
        let step = Integrator::new(&parts, h, 0.0);
        b.iter(|| {
            let mut p = Point::default();
            for &u in &volts {
                step.advance(&mut p, u, 10);
            }
            black_box(p.state())
        })
    });
    group.finish();
}

criterion_group!(benches, plate, circuit, circuit_integrator);

/// The circuit model on one thread (true model, batch 32) against the pace
/// of the board it stands in for (`seconds_per_sample`: drive plus guard).
/// Goal: ≥ 5 × at the 196-element drive, ≥ 3 × for the 1960-element
/// readout, so the simulator is never the slow part on a busy lab PC.
fn circuit_against_the_board() {
    println!("\ncircuit model, one thread, true model, batch {BATCH}: best of 5 sweeps");
    for (name, n_in, probe, goal) in [
        ("196-element drive", 196, Probe::Collector, 5.0),
        ("1960-element readout", 1960, Probe::Capacitor, 3.0),
    ] {
        let mut cfg = CircuitConfig::default();
        cfg.drive.n_in = n_in;
        cfg.probe = probe;
        let mut m = CircuitModel::new(cfg, Variant::True, 1).expect("bench config");
        m.set_threads(1);
        let (x, theta) = inputs(&m);
        black_box(forward(&mut m, x.view(), theta.view()));
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(forward(&mut m, x.view(), theta.view()));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let (model, board) = (BATCH as f64 / best, 1.0 / m.seconds_per_sample());
        println!(
            "  {name:<21} {model:>7.0} samples/s, board {board:>4.0}/s: {:>4.1} × (goal ≥ {goal} ×)",
            model / board
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs each bench once, without --bench.
    if std::env::args().any(|a| a == "--bench") {
        circuit_against_the_board();
    }
}
