//! The network: its layers with their parameters, and the published limits
//! of the devices its physical layers run on.

use std::collections::HashMap;

use candle_core::Var;
use hilt_core::DeviceSpec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::layer::Layer;
use super::spec::{NetworkSpec, Readout};
use crate::error::{Error, Result};

/// A network of physical and digital layers.
#[derive(Debug)]
pub struct Network {
    /// Width of the input.
    pub n_in: usize,
    /// Classes of the task: the width of the output.
    pub n_classes: usize,
    /// The layers in order, each with its parameters.
    pub layers: Vec<Layer>,
    /// Published limits of each device the network uses.
    pub devices: HashMap<String, DeviceSpec>,
    /// How the output becomes a class.
    pub readout: Readout,
}

impl Network {
    /// Fresh parameters for `spec` on `devices` (see [`Layer`] for how each
    /// kind starts). (Starting θ near the middle of the range instead was
    /// measured to train far worse on the additive SHG mask.)
    pub fn init(
        mut spec: NetworkSpec,
        devices: HashMap<String, DeviceSpec>,
        seed: u64,
    ) -> Result<Self> {
        spec.resolve(&devices)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let layers = spec
            .layers
            .iter()
            .map(|l| Layer::init(l, &devices, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Network {
            n_in: spec.n_in,
            n_classes: spec.n_classes,
            layers,
            devices,
            readout: spec.readout,
        })
    }

    /// The structure, as a checkpoint records it and `init` rebuilds it.
    pub fn spec(&self) -> NetworkSpec {
        NetworkSpec {
            n_in: self.n_in,
            n_classes: self.n_classes,
            layers: self.layers.iter().map(Layer::spec).collect(),
            readout: self.readout,
        }
    }

    /// The devices of the physical layers, sorted, each once.
    pub fn device_ids(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .layers
            .iter()
            .filter_map(|l| l.device().map(str::to_string))
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// How many layers run on a device.
    pub fn n_physical(&self) -> usize {
        self.layers.iter().filter(|l| l.device().is_some()).count()
    }

    /// The published spec of layer `i`'s device.
    pub(crate) fn device_of(&self, i: usize) -> Result<&DeviceSpec> {
        match self.layers.get(i).and_then(Layer::device) {
            Some(device) => self
                .devices
                .get(device)
                .ok_or_else(|| Error::invalid(format!("layer {i}: unknown device '{device}'"))),
            None => Err(Error::invalid(format!("layer {i} is not physical"))),
        }
    }

    /// Trainable physical parameters (θ of every physical layer).
    pub fn physical_vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Physical { theta, .. } => Some(theta.clone()),
                _ => None,
            })
            .collect()
    }

    /// Trainable digital parameters: the rescales' gains and offsets and the
    /// linear layers' weights (not the rescales' fixed statistics).
    pub fn digital_vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| match l {
                Layer::Rescale { a, b, .. } => vec![a.clone(), b.clone()],
                Layer::Linear { w, b } => vec![w.clone(), b.clone()],
                _ => vec![],
            })
            .collect()
    }

    /// Trainable values (physical, digital): what a run reports it trained.
    pub fn n_trainable(&self) -> (usize, usize) {
        let count = |v: Vec<Var>| v.iter().map(|v| v.elem_count()).sum();
        (count(self.physical_vars()), count(self.digital_vars()))
    }
}
