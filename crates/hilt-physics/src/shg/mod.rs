//! Second-harmonic generation by a shaped femtosecond pulse: the optical
//! PNN layer of Wright et al. (2022), `physics.md` §2.1.

mod config;
mod layout;
mod model;
mod optics;

pub use config::{Layout, ShgConfig};
pub use model::ShgModel;
