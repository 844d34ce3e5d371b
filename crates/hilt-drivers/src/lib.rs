//! Device implementations behind the `hilt_core::Device` trait: the
//! in-process simulators (a physics model from `hilt-physics` driven like a
//! rig) and the serial path to real interface boards (`serial/`, growing
//! into the serial drivers). No gRPC in this crate: the daemon owns the
//! network.

#![warn(missing_docs)]

pub mod emulator;
mod error;
mod grid;
pub mod replay;
pub mod serial;
pub mod sim;
mod spec;

pub use error::Error;
pub use replay::ReplayDevice;
pub use sim::{SimDevice, SimSettings};
pub use spec::DeviceSettings;

/// `a`'s values in column-major order: a layout a caller may build and
/// the wire never carries.
#[cfg(test)]
pub(crate) fn column_major(a: &ndarray::Array2<f32>) -> ndarray::Array2<f32> {
    let mut f = ndarray::Array2::zeros(ndarray::ShapeBuilder::f(a.raw_dim()));
    f.assign(a);
    f
}
