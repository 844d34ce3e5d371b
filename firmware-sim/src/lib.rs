//! firmware-sim: an emulated interface board for each hilt rig. It speaks
//! hilt-wire on a pseudo-terminal exactly as a real board speaks it on USB
//! serial, measures with the same simulator hiltd runs in-process, and
//! injects the faults a lab link suffers (corruption, loss, duplication,
//! stalls, unplugging), so CI exercises the serial drivers for real.

pub mod board;

pub use board::{Board, Rig};
pub mod faults;
pub mod pty;
pub mod serve;
