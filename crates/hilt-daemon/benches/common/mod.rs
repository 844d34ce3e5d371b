//! What the daemon's benchmarks share: hiltd's allocator, the 64 × 8
//! loopback device each serves (so their figures compare), and how a
//! sorted sample is read.

// Each benchmark uses part of this.
#![allow(dead_code)]

use std::time::Duration;

/// hiltd's own allocator (its main.rs), so a daemon embedded in a bench
/// allocates as the real one does (and so does a bench's echo beside it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hiltd serving one loopback device, 64 inputs and 8 parameters.
pub const LOOPBACK_CONFIG: &str = r#"
[[device]]
id = "loop"
kind = "loopback"
max_batch = 4096
[device.loopback]
n_in = 64
n_par = 8
"#;

/// The `q` quantile of `sorted` (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
