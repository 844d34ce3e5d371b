use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::*;
use crate::twin::tests::synthetic;
use crate::twin::{FitOptions, fit};

/// An embedded hiltd serving one loopback device, `loop`, of `n_in`
/// inputs and 2 parameters (inputs in [0, 1], parameters in [−1, 1]); a
/// client of it, and the device as it describes itself.
#[cfg(feature = "embedded-daemon")]
pub(crate) async fn loopback_daemon(
    n_in: usize,
) -> (
    hilt_daemon::EmbeddedDaemon,
    hilt_client::Client,
    hilt_core::DeviceSpec,
) {
    let config = format!(
        "[[device]]\nid = \"loop\"\nkind = \"loopback\"\nmax_batch = 4096\n\
         [device.limits]\ninput = [0.0, 1.0]\nparam = [-1.0, 1.0]\n\
         [device.loopback]\nn_in = {n_in}\nn_par = 2\n"
    );
    let daemon = hilt_daemon::EmbeddedDaemon::start(
        hilt_daemon::Config::parse(&config, "test").unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = hilt_client::Client::connect(daemon.url()).await.unwrap();
    let (spec, _) = client.describe("loop").await.unwrap();
    (daemon, client, spec)
}

/// A twin of a loopback device (y = x) as `spec` describes it, fitted
/// briefly on a few hundred rows.
#[cfg(feature = "embedded-daemon")]
pub(crate) fn loopback_twin(spec: &hilt_core::DeviceSpec) -> crate::twin::Twin {
    let (n, w) = (300, spec.n_in);
    let x = ndarray::Array2::from_shape_fn((n, w), |(i, j)| ((i * 7 + j * 3) % 17) as f32 / 16.0);
    let theta =
        ndarray::Array2::from_shape_fn((n, spec.n_par), |(i, j)| ((i + j) % 5) as f32 / 8.0);
    let y = ndarray::Array3::from_shape_fn((1, n, w), |(_, i, j)| x[(i, j)]);
    small_twin(&crate::twin::TwinData {
        spec: spec.clone(),
        x,
        theta,
        y,
        saturated: ndarray::Array1::zeros(n),
    })
}

/// A twin fitted briefly (16 hidden units, 2 epochs): enough for tests of
/// the network's plumbing, not of its accuracy.
fn small_twin(data: &crate::twin::TwinData) -> crate::twin::Twin {
    fit(
        data,
        &FitOptions {
            hidden: vec![16],
            epochs: Some(2),
            quiet: true,
            ..FitOptions::default()
        },
    )
    .unwrap()
}

fn setup() -> (Network, HashMap<String, Arc<crate::twin::Twin>>, Tensor) {
    let data = synthetic(400, 3);
    let twin = small_twin(&data);
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

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5)
}

#[test]
fn the_label_overlay_writes_the_row_peak_into_the_label_slot() {
    let x = Tensor::new(
        &[[0.5f32, -2.0, 1.0, 0.25], [0.1, 0.2, 0.3, 0.4]],
        &Device::Cpu,
    )
    .unwrap();
    // Prepended: three slots, then the features; the slot holds max |x|.
    let o = Overlay {
        prepend: true,
        squash: false,
    };
    let got: Vec<Vec<f32>> = overlay(&x, &[2, 0], 3, o).unwrap().to_vec2().unwrap();
    assert_eq!(got[0], [0.0, 0.0, 2.0, 0.5, -2.0, 1.0, 0.25]);
    assert_eq!(got[1], [0.4, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4]);
    // In place: the first three features become the slots.
    let o = Overlay {
        prepend: false,
        squash: false,
    };
    let got: Vec<Vec<f32>> = overlay(&x, &[1, 2], 3, o).unwrap().to_vec2().unwrap();
    assert_eq!(got[0], [0.0, 2.0, 0.0, 0.25]);
    assert_eq!(got[1], [0.0, 0.0, 0.4, 0.4]);
    // Squashed first: the logistic of the features, the peak of those.
    let o = Overlay {
        prepend: true,
        squash: true,
    };
    let got: Vec<Vec<f32>> = overlay(&x, &[0, 1], 2, o).unwrap().to_vec2().unwrap();
    let s = |v: f32| 1.0 / (1.0 + (-v).exp());
    assert!(
        close(&got[0], &[s(1.0), 0.0, s(0.5), s(-2.0), s(1.0), s(0.25)]),
        "{got:?}"
    );
    // Bad labels and too few features are refused, not a panic.
    assert!(overlay(&x, &[3, 0], 3, o).is_err());
    assert!(overlay(&x, &[0], 3, o).is_err());
    let o = Overlay {
        prepend: false,
        squash: false,
    };
    assert!(overlay(&x, &[0, 0], 5, o).is_err());
}

#[test]
fn goodness_is_the_cosine_of_the_magnitudes_with_p() {
    let h = Tensor::new(&[[3.0f32, -4.0], [1.0, 0.0]], &Device::Cpu).unwrap();
    let p = Tensor::new(&[[0.6f32, 0.8]], &Device::Cpu).unwrap();
    let g: Vec<f32> = goodness(&h, &p).unwrap().to_vec1().unwrap();
    // |h| = (3, 4): (1.8 + 3.2) / 5 = 1; (1, 0): 0.6.
    assert!(close(&g, &[1.0, 0.6]), "{g:?}");
}

/// A one-block goodness network without a device: a linear layer picks
/// one label slot per output, so the label that lights a bigger feature
/// scores higher, and the scores are what the goodness says they are.
#[tokio::test]
async fn label_scoring_picks_the_label_whose_overlay_scores_best() {
    let spec = NetworkSpec {
        n_in: 2,
        n_classes: 2,
        layers: vec![
            LayerSpec::Linear { n_in: 4, n_out: 2 },
            LayerSpec::Goodness { dim: 2 },
        ],
        readout: Readout::Goodness {
            overlay: Overlay {
                prepend: true,
                squash: false,
            },
        },
    };
    let net = Network::init(spec, HashMap::new(), 0).unwrap();
    let (Layer::Linear { w, b }, Layer::Goodness { p }) = (&net.layers[0], &net.layers[1]) else {
        panic!("layers");
    };
    // out = (slot0 + f0, slot1); p = (1, 0): goodness = |o0| / ‖o‖.
    w.set(&Tensor::new(&[[1f32, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]], &Device::Cpu).unwrap())
        .unwrap();
    b.set(&Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    p.set(&Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap())
        .unwrap();
    let x = Tensor::new(&[[1.0f32, 3.0], [2.0, 0.5]], &Device::Cpu).unwrap();
    let none = HashMap::new();
    let Readout::Goodness { overlay: ov } = net.readout else {
        panic!("readout");
    };
    let s: Vec<Vec<f32>> = net
        .label_scores(&x, ov, &mut Physics::Twins(&none))
        .await
        .unwrap()
        .to_vec2()
        .unwrap();
    // Row 0 (peak 3): label 0 → out (3 + 1, 0) → 1; label 1 → (1, 3) → 1/√10.
    // Row 1 (peak 2): label 0 → (2 + 2, 0) → 1; label 1 → (2, 2) → 1/√2.
    assert!(close(&s[0], &[1.0, 1.0 / 10f32.sqrt()]), "{s:?}");
    assert!(close(&s[1], &[1.0, 1.0 / 2f32.sqrt()]), "{s:?}");
    assert_eq!(
        best_label(&Tensor::new(s, &Device::Cpu).unwrap()).unwrap(),
        [0, 0]
    );
}

#[test]
fn phyll_blocks_concatenate_their_input_and_return_to_the_device_width() {
    let data = synthetic(10, 3);
    let mut devices = HashMap::from([("synthetic".to_string(), data.spec.clone())]);
    let d = devices.get_mut("synthetic").unwrap();
    let (n_in, n_out) = (d.n_in, d.n_out);
    let overlay = Overlay {
        prepend: false,
        squash: false,
    };
    let mut spec = NetworkSpec::phyll(n_in, 2, "synthetic", 2, overlay);
    spec.resolve(&devices).unwrap();
    assert_eq!(
        spec.layers,
        [
            LayerSpec::Physical {
                device: "synthetic".into(),
                skip: true
            },
            LayerSpec::Linear {
                n_in: n_out + n_in,
                n_out: n_in
            },
            LayerSpec::Goodness { dim: n_in },
            LayerSpec::Normalize,
            LayerSpec::Physical {
                device: "synthetic".into(),
                skip: true
            },
            LayerSpec::Linear {
                n_in: n_out + n_in,
                n_out: n_in
            },
            LayerSpec::Goodness { dim: n_in },
        ]
    );
    // The digital baseline has about as many values as asked for.
    let net = Network::init(NetworkSpec::digital(12, 7, 350), HashMap::new(), 0).unwrap();
    let (p, q) = net.n_trainable();
    assert_eq!(p, 0);
    assert!((330..=370).contains(&q), "{q}");
}

/// Following the statistics: momentum 0 leaves a rescale as it was,
/// momentum 1 puts a rescale that feeds a device at the batch's mean and
/// floored spread of what reaches it (for the first, the inputs
/// themselves), a shift of the inputs moves it by momentum × the shift,
/// and the readout's standardisation never moves.
#[tokio::test]
async fn rescales_that_feed_a_device_follow_the_batch_by_the_momentum() {
    let (net, twins, x) = setup();
    let (_, measured) = net
        .forward_values(&x, Physics::Twins(&twins))
        .await
        .unwrap();
    let ys: Vec<Tensor> = measured.iter().map(|m| m.y.clone()).collect();
    let stats = |i: usize| match &net.layers[i] {
        Layer::Rescale { mean, inv_std, .. } => (
            mean.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            inv_std
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        ),
        _ => panic!("layer {i} is not a rescale"),
    };
    let rescales: Vec<usize> = (0..net.layers.len())
        .filter(|&i| matches!(net.layers[i], Layer::Rescale { .. }))
        .collect();
    let (first, readout) = (rescales[0], *rescales.last().unwrap());
    assert!(first < readout);
    let before = (stats(first), stats(readout));
    net.follow_statistics(&x, &ys, 0.0).unwrap();
    assert_eq!((stats(first), stats(readout)), before);

    net.follow_statistics(&x, &ys, 1.0).unwrap();
    let (bm, bs) = batch_stats(&x).unwrap();
    let (m, inv) = stats(first);
    let bm = bm.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bs = bs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for k in 0..m.len() {
        assert!(
            (m[k] - bm[k]).abs() < 1e-6,
            "mean {k}: {} vs {}",
            m[k],
            bm[k]
        );
        assert!((inv[k] * bs[k] - 1.0).abs() < 1e-5, "spread {k}");
    }
    // Inputs brighter by 0.5 everywhere, at momentum 0.25: the mean moves
    // by 0.125, the spread not at all.
    let shifted = (&x + 0.5).unwrap();
    let ys_shifted: Vec<Tensor> = ys.iter().map(|y| (y + 0.5).unwrap()).collect();
    net.follow_statistics(&shifted, &ys_shifted, 0.25).unwrap();
    let (m1, inv1) = stats(first);
    for k in 0..m.len() {
        assert!(
            (m1[k] - m[k] - 0.125).abs() < 1e-5,
            "mean {k}: {} → {}",
            m[k],
            m1[k]
        );
        assert!(
            (inv1[k] - inv[k]).abs() < 1e-4 * inv[k].abs(),
            "spread {k} moved"
        );
    }
    assert_eq!(stats(readout), before.1, "the readout followed");
}

/// PAT's interleaved forward (the graph built while the next layer is
/// measured) gives exactly what measuring every layer and then building
/// the graph gives: the same output, penalty, measurements and gradients.
#[cfg(feature = "embedded-daemon")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interleaved_pat_forward_equals_measuring_then_building() {
    let (daemon, client, spec) = loopback_daemon(3).await;
    let twin = loopback_twin(&spec);
    let twins = HashMap::from([("loop".to_string(), Arc::new(twin))]);
    let devices = HashMap::from([("loop".to_string(), spec)]);
    // A device without limits is refused, not a panic.
    let mut unbounded = devices.clone();
    if let Some(d) = unbounded.get_mut("loop") {
        d.param_range = hilt_core::Range::new(f32::NEG_INFINITY, f32::INFINITY);
    }
    let spec3 = || NetworkSpec::all_physical(3, 3, "loop", "loop", 3);
    let e = Network::init(spec3(), unbounded, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no finite parameter range"), "{e}");
    let net = Network::init(spec3(), devices, 2).unwrap();
    let x = Tensor::rand(0.1f32, 0.9, (5, 3), &Device::Cpu).unwrap();
    let mut rigs = HashMap::from([(
        "loop".to_string(),
        crate::rig::Rig::open(&client, "loop").await.unwrap(),
    )]);

    let (_, measured) = net
        .forward_values(&x, Physics::Rigs(&mut rigs, 1))
        .await
        .unwrap();
    let (out_a, pen_a) = net.forward_graph(&x, &twins, Some(&measured)).unwrap();
    let (out_b, pen_b, measured_b) = net.forward_pat(&x, &mut rigs, 1, &twins).await.unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    assert_eq!(bits(&out_a), bits(&out_b));
    assert_eq!(bits(&pen_a), bits(&pen_b));
    assert_eq!(measured.len(), measured_b.len());
    for (a, b) in measured.iter().zip(&measured_b) {
        assert_eq!(bits(&a.y), bits(&b.y));
        assert_eq!(bits(&a.applied_theta), bits(&b.applied_theta));
    }
    assert_eq!(grads_of(&net, &out_a), grads_of(&net, &out_b));
    for rig in rigs.into_values() {
        rig.release().await.unwrap();
    }
    daemon.shutdown().await.unwrap();
}
