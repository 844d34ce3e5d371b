//! Digital twins: record a device (`collect`, `data`), fit a differentiable
//! model of it (`fit`): its features (`encode`), normalisation (`norm`) and
//! body (`body`: an MLP, or the waveform model of `wiener` for devices
//! whose published timing `shape` reads), kept in one file (`model`).

mod body;
mod collect;
mod data;
mod encode;
mod fit;
mod model;
mod norm;
mod shape;
mod wiener;

pub use body::{Dense, Trainable, TwinBody, TwinKind};
pub use collect::{CollectOptions, REQUEST_BYTES, collect, uniform_probes};
pub use data::TwinData;
pub use encode::Encoder;
pub use fit::{FitOptions, fit, relative_error};
pub use model::{Twin, TwinMeta};
pub use norm::Norm;
pub use shape::{BIN_EDGES_KEY, BinReadout, LEAD, MEMORY_KEY, Shape};
pub use wiener::{WaveformParams, Wiener};

#[cfg(test)]
pub(crate) mod tests;
