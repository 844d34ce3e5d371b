//! The daemon-wide halt. An admin sets it; `Daemon::submit` refuses new
//! batches while it is set, and every actor checks it again before it
//! measures, so a batch validated while the halt arrived, or queued
//! before it, never reaches the rig after the halt.

use std::sync::Mutex;

/// `halted by <name>[: <reason>]`, while halted.
#[derive(Debug, Default)]
pub struct Halt(Mutex<Option<String>>);

impl Halt {
    /// Why the daemon is halted, if it is.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Halt (`Some(why)`) or resume (`None`).
    pub fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}
