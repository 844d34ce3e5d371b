//! Digital twins: record a device, fit a differentiable model of it.

mod collect;
mod data;
mod encode;
mod fit;
mod model;
mod wiener;

pub use collect::{CollectOptions, collect};
pub use data::TwinData;
pub use encode::Encoder;
pub use fit::{FitOptions, fit};
pub use model::{Twin, TwinKind, TwinMeta};

#[cfg(test)]
pub(crate) mod tests;
