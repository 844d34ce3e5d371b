//! A run stopped after an epoch and carried on from what it saved trains
//! to the bits of a run that never stopped, for every method. The rig is
//! a loopback (noiseless, y = x on the actuator grid), so everything that
//! could differ is the state each method and the loop carry: optimiser
//! moments, random streams, counters, the shuffle.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::Array2;

use super::state::TENSOR_PREFIX;
use super::*;
use crate::data::{Split, Task};
use crate::error::Error;
use crate::net::{Checkpoint, Network, NetworkSpec, Overlay};
use crate::rig::Rig;
use crate::twin::Twin;

fn split(rows: usize, offset: usize) -> Split {
    let x = Array2::from_shape_fn((rows, 4), |(i, j)| {
        (((i + offset) * 7 + j * 5) % 19) as f32 / 20.0 + 0.02
    });
    let y = (0..rows).map(|i| ((i + offset) % 4) as u32).collect();
    Split { x, y }
}

fn setting<'a>(
    sets: &'a (Split, Split),
    twins: &'a mut HashMap<String, Arc<Twin>>,
    rigs: &'a mut HashMap<String, Rig>,
    resume: Option<Resume>,
) -> Setting<'a> {
    Setting {
        train: &sets.0,
        test: &sets.1,
        twins,
        rigs,
        spent_before: 0,
        sentinel: None,
        resume,
    }
}

fn bits(net: &Network) -> Vec<(String, Vec<u32>)> {
    net.layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.named_vars(i))
        .map(|(name, v)| {
            let values = v
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap_or_default();
            (name, values.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_resumed_after_an_epoch_trains_to_the_bits_of_an_unbroken_run() {
    let (daemon, client, spec) = crate::net::tests::loopback_daemon(4).await;
    let devices = HashMap::from([("loop".to_string(), spec.clone())]);
    let mut rigs = HashMap::from([(
        "loop".to_string(),
        Rig::open(&client, "loop").await.unwrap(),
    )]);
    // A twin of the loopback for the methods that need one.
    let twin = crate::net::tests::loopback_twin(&spec);
    let with_twin: HashMap<String, Arc<Twin>> =
        HashMap::from([("loop".to_string(), Arc::new(twin))]);
    let sets = (split(40, 0), split(9, 3));
    let dir = tempfile::tempdir().unwrap();

    for method in [
        Method::Pat,
        Method::Insilico,
        Method::Spsa,
        Method::Phyll,
        Method::Digital,
    ] {
        let network = match method {
            Method::Phyll => NetworkSpec::phyll(
                4,
                4,
                "loop",
                2,
                Overlay {
                    prepend: false,
                    squash: false,
                },
            ),
            Method::Digital => NetworkSpec::digital(4, 4, 30),
            _ => NetworkSpec::all_physical(4, 4, "loop", "loop", 2),
        };
        let opt = TrainOptions {
            method,
            epochs: 4,
            batch: 8,
            seed: 3,
            quiet: true,
            ..TrainOptions::default()
        };
        let mut twins = if method.needs_twin() {
            with_twin.clone()
        } else {
            HashMap::new()
        };

        let whole = Network::init(network.clone(), devices.clone(), 1).unwrap();
        let done = train(
            &whole,
            setting(&sets, &mut twins, &mut rigs, None),
            &opt,
            |_, _, _| Ok(()),
        )
        .await
        .unwrap();

        // Stopped after epoch 2, its checkpoint written as a run writes it.
        let path = dir.path().join(format!("{}.safetensors", method.as_str()));
        let mut saved = None;
        let cut = Network::init(network.clone(), devices.clone(), 1).unwrap();
        let stop = train(
            &cut,
            setting(&sets, &mut twins, &mut rigs, None),
            &opt,
            |p, state, net| {
                let meta = Checkpoint {
                    task: Task::Vowels,
                    method: method.as_str().into(),
                    seed: opt.seed,
                    epoch: p.rows.len(),
                    repeats: opt.repeats,
                    network: net.spec(),
                    devices: devices.clone(),
                };
                net.save_with(&path, &meta, &[], state.tensors())?;
                saved = Some(p.clone());
                if p.rows.len() == 2 {
                    return Err(Error::invalid("stopped"));
                }
                Ok(())
            },
        )
        .await;
        assert!(stop.is_err(), "{method:?}: the run did not stop");

        let mut file = Network::open(&path).unwrap();
        let resumed = Network::from_file(&mut file).unwrap();
        let resume = Resume {
            progress: saved.take().unwrap(),
            tensors: file.take_prefixed(TENSOR_PREFIX),
            path: path.clone(),
        };
        let rest = train(
            &resumed,
            setting(&sets, &mut twins, &mut rigs, Some(resume)),
            &opt,
            |_, _, _| Ok(()),
        )
        .await
        .unwrap();
        assert_eq!(
            bits(&resumed),
            bits(&whole),
            "{method:?}: the networks differ"
        );
        let curve = |rows: &[EpochRow]| -> Vec<(usize, u64, u64, f64)> {
            rows.iter()
                .map(|r| {
                    (
                        r.epoch,
                        r.train_loss.to_bits(),
                        r.rig_samples,
                        r.test_accuracy,
                    )
                })
                .collect()
        };
        assert_eq!(curve(&rest.epochs), curve(&done.epochs), "{method:?}");
        assert_eq!(
            (rest.samples_train, rest.samples_eval),
            (done.samples_train, done.samples_eval),
            "{method:?}"
        );
    }
    for rig in rigs.into_values() {
        rig.release().await.unwrap();
    }
    daemon.shutdown().await.unwrap();
}
