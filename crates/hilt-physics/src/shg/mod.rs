//! Second-harmonic generation by a shaped femtosecond pulse: the optical
//! PNN layer of Wright, Onodera, Stein et al., "Deep physical neural
//! networks trained with backpropagation", Nature 601, 549–555 (2022).
//! x and θ set the spectral amplitudes of a pulse shaper's channels; the
//! output is the binned spectrum of the frequency-doubled pulse.

mod config;
mod layout;
mod model;
mod optics;

pub use config::{Layout, ShgConfig};
pub use model::ShgModel;
