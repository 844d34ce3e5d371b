//! The speaker-driven oscillating plate: the mechanical PNN layer of
//! Wright et al., Nature 601, 549 (2022). x and θ form one drive waveform
//! on a voice coil glued to a titanium plate; the microphone's recording
//! is read out in time bins.

mod coil;
mod config;
mod mic;
mod model;
mod modes;

pub use config::PlateConfig;
pub use model::PlateModel;
