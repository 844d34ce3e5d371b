//! The speaker-driven oscillating plate: the mechanical PNN layer of
//! Wright et al. (2022), `physics.md` §2.2.

mod coil;
mod config;
mod mic;
mod model;
mod modes;

pub use config::PlateConfig;
pub use model::PlateModel;
