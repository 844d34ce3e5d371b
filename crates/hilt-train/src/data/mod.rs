//! Labelled data sets with fixed, seeded train/test splits. Loaders read
//! local files only (never the network) and name the file and what was
//! expected when something is missing or malformed.

mod idx;
mod set;
mod vowels;

use std::path::Path;

pub use set::{Dataset, SPLIT_SEED, Split, Task};

use crate::error::{Error, Result};

/// Load `task` from `dir`.
pub fn load(task: Task, dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            format!("no such directory (the {} data set)", task.as_str()),
        ));
    }
    match task {
        Task::Vowels => vowels::load(dir),
        Task::Mnist => idx::load(task, dir),
        Task::FashionMnist => idx::load(task, dir),
    }
}
