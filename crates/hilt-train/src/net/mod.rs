//! A network of physical and digital layers: its structure (`spec`), its
//! layers with their parameters (`layer`, `network`), its two forward
//! passes (`forward`), physical local learning's label overlay, goodness
//! and label scoring (`local`), the rescales' standardisation (`norm`) and
//! its file (`checkpoint`).

mod checkpoint;
mod forward;
mod layer;
mod local;
mod network;
mod norm;
mod spec;

pub use checkpoint::Checkpoint;
pub use forward::{Measured, Physics};
pub use layer::Layer;
pub use local::{best_label, goodness, overlay};
pub use network::Network;
pub use norm::batch_stats;
pub use spec::{LayerSpec, NetworkSpec, Overlay, Readout};

#[cfg(test)]
pub(crate) mod tests;
