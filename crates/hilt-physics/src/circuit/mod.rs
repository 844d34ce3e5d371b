//! The analog transistor circuit: the electronic PNN layer of Wright et
//! al. (2022), `physics.md` §2.3.

mod config;
mod model;
mod solver;

pub use config::{CircuitConfig, Probe};
pub use model::CircuitModel;
pub use solver::{Components, Point, State};
