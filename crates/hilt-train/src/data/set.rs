//! The data sets' types: the task, its splits and the seeded split itself.

use std::path::PathBuf;

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The seed of every split this crate makes. Fixed rather than tied to the
/// training seed, so runs with different seeds are scored on the same test
/// set.
pub const SPLIT_SEED: u64 = 20_220_126;

/// The classification tasks hilt trains for; each names its data set
/// and how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Hillenbrand vowels: 7 classes of formant features (the paper's SHG task).
    Vowels,
    /// Handwritten digits, 28×28 (the plate and circuit networks).
    Mnist,
    /// Zalando's clothing images, 28×28, a harder drop-in for MNIST.
    FashionMnist,
}

impl Task {
    /// The name on the command line, in metrics and in checkpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Vowels => "vowels",
            Task::Mnist => "mnist",
            Task::FashionMnist => "fashion-mnist",
        }
    }

    /// Where the data lives when neither `--data` nor `HILT_DATA` is
    /// given; `None`: the copy built into `hilt` (the vowels, 16 kB, so the
    /// demo needs nothing outside the repository).
    pub fn default_dir(self) -> Option<PathBuf> {
        match self {
            Task::Vowels => None,
            Task::Mnist => Some(PathBuf::from("../shared/data/mnist")),
            Task::FashionMnist => Some(PathBuf::from("/usr/share/datasets/fashion-mnist")),
        }
    }
}

/// One side of a train/test split.
#[derive(Debug, Clone)]
pub struct Split {
    /// One row per example; features scaled so a digital layer can start
    /// from unit-order values (z-scores for vowels, pixel/255 for images).
    pub x: Array2<f32>,
    /// Class of each row, `0..n_classes`.
    pub y: Vec<u32>,
}

impl Split {
    /// Examples in the split.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// No examples: accuracy on it is reported as 0.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The given rows, in that order (a batch, a subsample).
    pub fn select(&self, rows: &[usize]) -> Split {
        Split {
            x: self.x.select(Axis(0), rows),
            y: rows.iter().map(|&r| self.y[r]).collect(),
        }
    }
}

/// A task's data, split once with the fixed [`SPLIT_SEED`].
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The task it belongs to.
    pub task: Task,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Examples trained on.
    pub train: Split,
    /// Examples scored on, never trained on.
    pub test: Split,
    /// How the split was made, for logs and metrics.json.
    pub split: String,
}

impl Dataset {
    /// Width of an example: the network's input width.
    pub fn n_features(&self) -> usize {
        self.train.x.ncols()
    }

    /// Classes: the network's output width.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Keep at most `n_train`/`n_test` examples (seeded, class-balanced by
    /// construction of a random draw); for quick runs and CI.
    pub fn truncate(&mut self, n_train: Option<usize>, n_test: Option<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(SPLIT_SEED ^ 0x5eed);
        let mut changed = false;
        for (split, n) in [(&mut self.train, n_train), (&mut self.test, n_test)] {
            if let Some(n) = n.filter(|&n| n < split.len()) {
                changed = true;
                let mut rows: Vec<usize> = (0..split.len()).collect();
                rows.shuffle(&mut rng);
                rows.truncate(n);
                rows.sort_unstable();
                *split = split.select(&rows);
            }
        }
        if !changed {
            return;
        }
        self.split = format!(
            "{} (subsampled to {} train / {} test)",
            self.split,
            self.train.len(),
            self.test.len()
        );
    }

    /// Mean-pool square images down to `side`×`side` (28 → 14: the 196
    /// inputs of the paper's plate and circuit networks). The side must
    /// divide the images' own.
    pub fn pool_images(&mut self, side: usize) -> Result<()> {
        let n = self.n_features();
        let native = (n as f64).sqrt().round() as usize;
        if self.task == Task::Vowels || native * native != n {
            return Err(Error::invalid(format!(
                "--image-side: the {} data set has no square images",
                self.task.as_str()
            )));
        }
        if side == native {
            return Ok(());
        }
        if side == 0 || side > native || !native.is_multiple_of(side) {
            return Err(Error::invalid(format!(
                "--image-side {side}: must divide the images' side of {native}"
            )));
        }
        let f = native / side;
        for split in [&mut self.train, &mut self.test] {
            let mut out = Array2::<f32>::zeros((split.len(), side * side));
            for (src, mut dst) in split.x.outer_iter().zip(out.outer_iter_mut()) {
                for r in 0..native {
                    for c in 0..native {
                        dst[(r / f) * side + c / f] += src[r * native + c];
                    }
                }
            }
            out.mapv_inplace(|v| v / (f * f) as f32);
            split.x = out;
        }
        self.split = format!(
            "{}; images mean-pooled {native}×{native} → {side}×{side}",
            self.split
        );
        Ok(())
    }
}

/// Stratified split: `test_share` of every class goes to the test set.
pub(crate) fn stratified_split(
    labels: &[u32],
    n_classes: usize,
    test_share: f64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(SPLIT_SEED);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for c in 0..n_classes {
        let mut rows: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        rows.shuffle(&mut rng);
        let n_test = (rows.len() as f64 * test_share).round() as usize;
        test.extend_from_slice(&rows[..n_test]);
        train.extend_from_slice(&rows[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_averages_blocks_and_refuses_what_does_not_divide() {
        let x = Array2::from_shape_fn((1, 16), |(_, j)| j as f32);
        let split = Split { x, y: vec![0] };
        let mut d = Dataset {
            task: Task::Mnist,
            classes: vec!["0".into()],
            train: split.clone(),
            test: split,
            split: "s".into(),
        };
        assert!(d.pool_images(3).is_err());
        d.pool_images(2).unwrap();
        // Top-left 2×2 block of a 4×4 image 0..16: 0, 1, 4, 5.
        assert_eq!(d.train.x.row(0).to_vec(), [2.5, 4.5, 10.5, 12.5]);
        assert!(d.split.ends_with("4×4 → 2×2"));
    }

    #[test]
    fn stratified_split_is_disjoint_complete_and_fixed() {
        let labels: Vec<u32> = (0..100).map(|i| i % 4).collect();
        let (a, b) = stratified_split(&labels, 4, 0.2);
        assert_eq!(a.len() + b.len(), 100);
        assert_eq!(b.len(), 20);
        for c in 0..4 {
            assert_eq!(b.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        assert!(a.iter().all(|i| !b.contains(i)));
        assert_eq!((a, b), stratified_split(&labels, 4, 0.2));
    }
}
