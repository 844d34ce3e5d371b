//! Labelled data sets with fixed, seeded train/test splits. Loaders read
//! local files only (never the network) and name the file and what was
//! expected when something is missing or malformed.

mod idx;
mod set;
mod vowels;

use std::path::Path;

pub use set::{Dataset, SPLIT_SEED, Split, Task};

use crate::error::{Error, Result};

/// Load `task` from `dir`, or where it lives by default (`None`; see
/// [`Task::default_dir`]).
pub fn load_from(task: Task, dir: Option<&Path>) -> Result<Dataset> {
    match (dir, task.default_dir()) {
        (Some(d), _) => load(task, d),
        (None, Some(d)) => load(task, &d),
        (None, None) => vowels::load_embedded(),
    }
}

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
