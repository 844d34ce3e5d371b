//! Simulation speed of the plate and circuit models at their default
//! settings (196-element MNIST drive, superposed θ). The simulator must
//! never be the slow part of a run: the real plate plays ~20–30 samples/s
//! and the real circuit ~500–1000 samples/s (`physics.md` §2.2–2.3).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_physics::circuit::{CircuitConfig, CircuitModel};
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
        let x = Array2::from_shape_fn((BATCH, model.n_in()), |(i, j)| {
            ((i * 7 + j) % 13) as f32 / 12.0
        });
        let theta = Array2::from_elem((1, model.n_par()), -0.2f32);
        group.bench_function(variant.as_str(), |b| {
            b.iter(|| black_box(forward(&mut model, x.view(), theta.view())))
        });
    }
    group.finish();
}

const BOTH: [Variant; 2] = [Variant::Nominal, Variant::True];

fn plate(c: &mut Criterion) {
    run(c, "plate_196_batch32", &BOTH, |v| {
        PlateModel::new(PlateConfig::default(), v, 1).expect("default config")
    });
    // The class readout of the MNIST setups (demo.toml): ten copies of the
    // image, 10 bins. The real plate plays it in 10 × 16.3 ms + 20 ms.
    run(c, "plate_196x10_batch32", &[Variant::True], |v| {
        let mut cfg = PlateConfig::default();
        cfg.drive.copies = 10;
        cfg.n_bins = 10;
        PlateModel::new(cfg, v, 1).expect("ten copies")
    });
}

fn circuit(c: &mut Criterion) {
    run(c, "circuit_196_batch32", &BOTH, |v| {
        CircuitModel::new(CircuitConfig::default(), v, 1).expect("default config")
    });
    // Ten copies: the real board plays 10 × 0.98 ms + 0.2 ms.
    run(c, "circuit_196x10_batch32", &[Variant::True], |v| {
        let mut cfg = CircuitConfig::default();
        cfg.drive.copies = 10;
        cfg.n_bins = 10;
        CircuitModel::new(cfg, v, 1).expect("ten copies")
    });
}

criterion_group!(benches, plate, circuit);
criterion_main!(benches);
