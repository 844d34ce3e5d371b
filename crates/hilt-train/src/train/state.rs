//! What a run keeps between steps besides the network, so that an
//! interrupted run can carry on where it stopped (`hilt train --resume`):
//! the optimisers' moments as named tensors, and counters and random
//! streams' positions as numbers. It is written into the checkpoint file
//! after every epoch, beside the network, so the two can never disagree.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Prefix of the state's tensors in the checkpoint: apart from the
/// network's own (`layer{i}.…`), which `hilt eval` reads alone.
pub const TENSOR_PREFIX: &str = "train/";

/// The state being saved.
#[derive(Debug, Default)]
pub struct StateOut {
    pub(crate) tensors: Vec<(String, Tensor)>,
    pub(crate) numbers: BTreeMap<String, String>,
}

impl StateOut {
    /// A tensor, copied (the variable it came from moves on).
    pub fn tensor(&mut self, name: String, t: &Tensor) -> Result<()> {
        self.tensors
            .push((format!("{TENSOR_PREFIX}{name}"), t.detach().copy()?));
        Ok(())
    }

    /// A counter or position. Written as decimal text: a random stream's
    /// position is a u128, which JSON numbers do not hold exactly.
    pub fn number(&mut self, name: &str, v: u128) {
        self.numbers.insert(name.to_string(), v.to_string());
    }

    /// Where `rng` is in its stream (its seed is the run's).
    pub fn rng(&mut self, name: &str, rng: &ChaCha8Rng) {
        self.number(name, rng.get_word_pos());
    }

    /// The numbers, for the checkpoint's metadata.
    pub fn numbers(&self) -> &BTreeMap<String, String> {
        &self.numbers
    }

    /// The tensors, named as in the file.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }
}

/// A saved state being read back; every miss or mismatch names the file.
#[derive(Debug)]
pub struct StateIn<'a> {
    tensors: HashMap<String, Tensor>,
    numbers: &'a BTreeMap<String, String>,
    path: PathBuf,
}

impl<'a> StateIn<'a> {
    /// The state in `path`: its tensors (prefix included) and numbers.
    pub fn new(
        path: &Path,
        tensors: HashMap<String, Tensor>,
        numbers: &'a BTreeMap<String, String>,
    ) -> Self {
        StateIn {
            tensors,
            numbers,
            path: path.to_path_buf(),
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::data(
            &self.path,
            format!("{reason} (expected the training state `hilt train` writes after every epoch)"),
        )
    }

    /// The tensor `name`, which must be shaped like `like`.
    pub fn tensor(&mut self, name: &str, like: &Tensor) -> Result<Tensor> {
        let key = format!("{TENSOR_PREFIX}{name}");
        let t = self
            .tensors
            .remove(&key)
            .ok_or_else(|| self.bad(format!("tensor '{key}' missing")))?;
        if t.dims() != like.dims() || t.dtype() != like.dtype() {
            return Err(self.bad(format!(
                "tensor '{key}' is {:?} {:?}, expected {:?} {:?}",
                t.dtype(),
                t.dims(),
                like.dtype(),
                like.dims()
            )));
        }
        Ok(t)
    }

    /// The number `name`.
    pub fn number(&self, name: &str) -> Result<u128> {
        let text = self
            .numbers
            .get(name)
            .ok_or_else(|| self.bad(format!("number '{name}' missing")))?;
        text.parse()
            .map_err(|_| self.bad(format!("number '{name}' is '{text}', not a count")))
    }

    /// The count `name` (a step counter), which must fit a usize.
    pub fn count(&self, name: &str) -> Result<usize> {
        let v = self.number(name)?;
        usize::try_from(v).map_err(|_| self.bad(format!("number '{name}' is {v}, out of range")))
    }

    /// `rng` moved to where `name` says its stream was.
    pub fn rng(&self, name: &str, rng: &mut ChaCha8Rng) -> Result<()> {
        rng.set_word_pos(self.number(name)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    #[test]
    fn numbers_tensors_and_streams_read_back_and_misses_are_named() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..7 {
            rng.random::<u64>();
        }
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let mut out = StateOut::default();
        out.rng("loop", &rng);
        out.number("big", u128::MAX);
        out.tensor("m".into(), &t).unwrap();
        let tensors: HashMap<String, Tensor> = out.tensors().iter().cloned().collect();
        let numbers = out.numbers().clone();
        let mut from = StateIn::new(Path::new("ck"), tensors, &numbers);
        let mut again = ChaCha8Rng::seed_from_u64(5);
        from.rng("loop", &mut again).unwrap();
        assert_eq!(again.random::<u64>(), rng.random::<u64>());
        assert_eq!(from.number("big").unwrap(), u128::MAX);
        assert!(from.count("big").is_err());
        let back = from.tensor("m", &t).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        let e = from.tensor("m", &t).unwrap_err().to_string();
        assert!(e.contains("ck") && e.contains("'train/m' missing"), "{e}");
        let wrong = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut from = StateIn::new(
            Path::new("ck"),
            out.tensors().iter().cloned().collect(),
            &numbers,
        );
        let e = from.tensor("m", &wrong).unwrap_err().to_string();
        assert!(e.contains("expected F32 [3]"), "{e}");
        assert!(
            from.number("nope")
                .unwrap_err()
                .to_string()
                .contains("'nope' missing")
        );
    }
}
