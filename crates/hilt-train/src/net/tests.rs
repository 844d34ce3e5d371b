use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::*;
use crate::twin::tests::synthetic;
use crate::twin::{FitOptions, fit};

fn setup() -> (Network, HashMap<String, Arc<crate::twin::Twin>>, Tensor) {
    let data = synthetic(400, 3);
    let twin = fit(
        &data,
        &FitOptions {
            hidden: vec![16],
            epochs: Some(2),
            quiet: true,
            ..FitOptions::default()
        },
    )
    .unwrap();
    let devices = HashMap::from([("synthetic".to_string(), data.spec.clone())]);
    let spec = NetworkSpec::all_physical(3, 2, "synthetic", "synthetic", 1);
    let net = Network::init(spec, devices, 5).unwrap();
    let twins = HashMap::from([("synthetic".to_string(), Arc::new(twin))]);
    // Inside the input range, so no clamp is active.
    let x = Tensor::rand(0.2f32, 0.8, (6, 3), &Device::Cpu).unwrap();
    (net, twins, x)
}

fn grads_of(net: &Network, out: &Tensor) -> Vec<Vec<f32>> {
    let loss = out.sqr().unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    net.physical_vars()
        .iter()
        .chain(net.digital_vars().iter())
        .map(|v| {
            g.get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

/// When the device agrees with the twin, PAT's gradient is exactly the
/// twin's: the straight-through construction adds nothing of its own.
#[tokio::test]
async fn pat_equals_backprop_when_measurement_equals_twin() {
    let (net, twins, x) = setup();
    let (_, measured) = net
        .forward_values(&x, Physics::Twins(&twins))
        .await
        .unwrap();
    let (pat, _) = net.forward_graph(&x, &twins, Some(&measured)).unwrap();
    let (sil, _) = net.forward_graph(&x, &twins, None).unwrap();
    let (a, b) = (grads_of(&net, &pat), grads_of(&net, &sil));
    for (ga, gb) in a.iter().zip(&b) {
        for (u, v) in ga.iter().zip(gb) {
            assert!((u - v).abs() <= 1e-5 * (1.0 + v.abs()), "{u} vs {v}");
        }
    }
}

/// The forward value of a PAT layer is the measurement, bit for bit, even
/// when the twin predicts something else.
#[tokio::test]
async fn pat_forward_value_is_the_measurement() {
    let (net, twins, x) = setup();
    let (_, mut measured) = net
        .forward_values(&x, Physics::Twins(&twins))
        .await
        .unwrap();
    measured[0].y = (&measured[0].y * 1.7).unwrap().affine(1.0, 0.3).unwrap();
    let (pat, _) = net.forward_graph(&x, &twins, Some(&measured)).unwrap();
    // The readout rescale is the identity at initialisation.
    let want = measured[0].y.to_vec2::<f32>().unwrap();
    assert_eq!(pat.to_vec2::<f32>().unwrap(), want);
}

#[test]
fn widths_that_do_not_chain_are_refused() {
    let data = synthetic(10, 0);
    let devices = HashMap::from([("synthetic".to_string(), data.spec.clone())]);
    // 3 → 2 device twice: the second layer would receive 2 values, not 3.
    let spec = NetworkSpec::all_physical(3, 2, "synthetic", "synthetic", 2);
    let e = Network::init(spec, devices.clone(), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("takes 3 inputs but layer") && e.contains("receives 2"),
        "{e}"
    );
    let spec = NetworkSpec::all_physical(3, 5, "synthetic", "nope", 1);
    let e = Network::init(spec, devices, 0).unwrap_err().to_string();
    assert!(e.contains("device 'nope': not served"), "{e}");
}

#[test]
fn checkpoint_round_trip_restores_every_parameter() {
    let (net, _, _) = setup();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    let meta = Checkpoint {
        task: crate::data::Task::Vowels,
        method: "pat".into(),
        seed: 5,
        epoch: 3,
        repeats: 2,
        network: net.spec(),
        devices: net.devices.clone(),
    };
    net.save(&p, &meta).unwrap();
    let (back, m) = Network::load(&p).unwrap();
    assert_eq!(m.epoch, 3);
    assert_eq!(back.spec(), net.spec());
    let flat = |n: &Network| -> Vec<Vec<f32>> {
        n.physical_vars()
            .iter()
            .chain(n.digital_vars().iter())
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    assert_eq!(flat(&back), flat(&net));
}

/// A device of twice the data's width: an all-physical network tiles the
/// input into two copies, each with its own rescale.
fn tiled_setup() -> (Network, HashMap<String, Arc<crate::twin::Twin>>, Tensor) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let n = 200;
    let x = ndarray::Array2::from_shape_fn((n, 6), |_| rng.random_range(0.0f32..1.0));
    let theta = ndarray::Array2::from_shape_fn((n, 2), |_| rng.random_range(0.0f32..1.0));
    // Output k hears copy k: a class readout's bins.
    let y = ndarray::Array3::from_shape_fn((1, n, 2), |(_, i, k)| {
        x[(i, 3 * k)] + 2.0 * x[(i, 3 * k + 1)] - x[(i, 3 * k + 2)] + theta[(i, k)]
    });
    let data = crate::twin::TwinData {
        spec: crate::twin::tests::spec(6, 2, 2),
        x,
        theta,
        y,
        saturated: ndarray::Array1::zeros(n),
    };
    let twin = fit(
        &data,
        &FitOptions {
            hidden: vec![8],
            epochs: Some(1),
            quiet: true,
            ..FitOptions::default()
        },
    )
    .unwrap();
    let devices = HashMap::from([("synthetic".to_string(), data.spec.clone())]);
    let net = Network::init(
        NetworkSpec::all_physical(3, 2, "synthetic", "synthetic", 1),
        devices,
        1,
    )
    .unwrap();
    let twins = HashMap::from([("synthetic".to_string(), Arc::new(twin))]);
    let x = Tensor::rand(0.2f32, 0.8, (5, 3), &Device::Cpu).unwrap();
    (net, twins, x)
}

#[test]
fn a_tile_takes_as_many_copies_as_the_next_device_needs() {
    let (net, _, _) = tiled_setup();
    assert_eq!(net.spec().layers[0], LayerSpec::Tile { copies: 2 });
    assert_eq!(net.spec().layers[1], LayerSpec::Rescale { dim: 6 });
    // Where the device takes what arrives, the tile is one copy.
    let (plain, _, _) = setup();
    assert_eq!(plain.spec().layers[0], LayerSpec::Tile { copies: 1 });
}

/// The device receives the input once per copy, and each copy's rescale
/// gets its own gradient (the classes weigh the pixels differently).
#[tokio::test]
async fn tiled_copies_reach_the_device_and_train_separately() {
    let (net, twins, x) = tiled_setup();
    let (_, measured) = net
        .forward_values(&x, Physics::Twins(&twins))
        .await
        .unwrap();
    let sent = measured[0].applied_x.to_vec2::<f32>().unwrap();
    let want = x.to_vec2::<f32>().unwrap();
    for (row, w) in sent.iter().zip(&want) {
        assert_eq!(&row[..3], &w[..]);
        assert_eq!(&row[3..], &w[..]);
    }
    let (out, _) = net.forward_graph(&x, &twins, Some(&measured)).unwrap();
    let loss = out.narrow(1, 0, 1).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let Layer::Rescale { a, .. } = &net.layers[1] else {
        panic!("layer 1 is the rescale");
    };
    let ga: Vec<f32> = g
        .get(a.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(ga.len(), 6);
    assert_ne!(&ga[..3], &ga[3..], "the two copies share one gradient");
}
