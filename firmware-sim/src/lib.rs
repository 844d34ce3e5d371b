//! firmware-sim: an emulated interface board for each hilt rig. It speaks
//! hilt-wire on a pseudo-terminal exactly as a real board speaks it on USB
//! serial, measures with the same simulator hiltd runs in-process, and
//! injects the faults a lab link suffers (corruption, loss, duplication,
//! stalls, unplugging), so CI exercises the serial drivers for real.

#![warn(missing_docs)]

//!
//! The board itself (what it answers to each request) is
//! `hilt_drivers::emulator::Board`, the same one the serial driver's unit
//! tests talk to; this crate adds the pseudo-terminal and the faults.

pub mod faults;
pub mod pty;
pub mod serve;
