//! A network of physical and digital layers: its structure (`spec`), its
//! layers with their parameters (`layer`, `network`), its two forward
//! passes (`forward`) and its file (`checkpoint`).

mod checkpoint;
mod forward;
mod layer;
mod network;
mod spec;

pub use checkpoint::Checkpoint;
pub use forward::{Measured, Physics};
pub use layer::Layer;
pub use network::Network;
pub use spec::{LayerSpec, NetworkSpec};

#[cfg(test)]
mod tests;
