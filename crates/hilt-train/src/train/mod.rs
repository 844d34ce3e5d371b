//! Training a network: the options (`options`), the data-dependent start
//! both methods share (`init`), the epoch loop (`epochs`), the methods that
//! take one step each (`method`), how a network is scored (`score`), and
//! what a run carries from epoch to epoch to resume (`state`).

mod epochs;
mod init;
mod method;
mod options;
mod score;
mod sentinel;
pub mod state;
#[cfg(all(test, feature = "embedded-daemon"))]
mod tests;

pub use epochs::{EpochRow, Progress, Resume, Setting, Trained, finished, train};
pub use init::{InitBudget, initialise};
pub use method::{
    Backprop, Digital, InSilico, Pat, Phyll, Spsa, StepEnv, StepOutcome, TrainingMethod, estimate,
    local_loss,
};
pub use options::{LocalOptions, Method, SpsaOptions, TrainOptions};
pub use score::{accuracy, labels};
pub use sentinel::{DriftEvent, Refit, Refitted, SentinelOptions, SentinelState};
