//! Training methods, one file each. A method is one [`TrainingMethod`]:
//! given a batch it updates the network's parameters its own way. PAT and
//! in-silico differ only in the forward pass their graph is built on and
//! share the gradient step (`gradient.rs`); forward-only methods (PhyLL,
//! SPSA) need no twin and no graph, and implement `step` from scratch.

mod digital;
mod gradient;
mod insilico;
mod pat;
mod phyll;
mod spsa;
mod step;

pub use digital::Digital;
pub use gradient::Backprop;
pub use insilico::InSilico;
pub use pat::Pat;
pub use phyll::{Phyll, local_loss};
pub use spsa::{Spsa, estimate};
pub use step::{StepEnv, StepOutcome, TrainingMethod};
