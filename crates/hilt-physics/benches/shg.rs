//! Simulation speed of the SHG model (issue target: 64 channels, batch 256).
//! The simulator must never be the slow part of a run: a real rig does
//! ~100–1000 samples/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_physics::shg::{ShgConfig, ShgModel};
use hilt_physics::{PhysicalModel, Variant, forward};
use ndarray::Array2;

fn shg(c: &mut Criterion) {
    let batch = 256;
    let mut group = c.benchmark_group("shg_64ch_batch256");
    group.throughput(Throughput::Elements(batch as u64));
    for variant in [Variant::Nominal, Variant::True] {
        let mut model = ShgModel::new(ShgConfig::default(), variant, 1).expect("default config");
        let x = Array2::from_shape_fn((batch, model.n_in()), |(i, j)| {
            ((i * 7 + j) % 13) as f32 / 12.0
        });
        let theta = Array2::from_elem((1, model.n_par()), 0.5f32);
        group.bench_function(variant.as_str(), |b| {
            b.iter(|| black_box(forward(&mut model, x.view(), theta.view())))
        });
    }
    group.finish();
}

criterion_group!(benches, shg);
criterion_main!(benches);
