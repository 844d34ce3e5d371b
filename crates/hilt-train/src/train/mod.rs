//! Training a network: the options (`options`), the data-dependent start
//! both methods share (`init`), the epoch loop (`epochs`), the methods that
//! take one step each (`method`) and how a network is scored (`score`).

mod epochs;
mod init;
mod method;
mod options;
mod score;

pub use epochs::{EpochRow, Trained, train};
pub use init::initialise;
pub use method::{Backprop, InSilico, Pat, StepEnv, StepOutcome, TrainingMethod};
pub use options::{Method, TrainOptions};
pub use score::{accuracy, labels};
