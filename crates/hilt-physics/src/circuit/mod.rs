//! The analog transistor circuit: the electronic PNN layer of Wright et
//! al., Nature 601, 549 (2022). x and θ form one voltage waveform into an
//! RLC circuit with a transistor; its transient, sampled at 1 MS/s, is
//! read out in time bins.

mod config;
mod integrator;
mod model;
mod solver;

pub use config::{CircuitConfig, Probe};
pub use integrator::{Integrator, Point};
pub use model::CircuitModel;
pub use solver::{Components, State};
