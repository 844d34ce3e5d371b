//! One file per `hilt` command, each with its clap arguments and an
//! `async fn run`; the arguments several commands share are in `shared`.

pub mod admin;
pub mod bench;
pub mod collect;
pub mod compare;
pub mod demo;
pub mod describe;
pub mod devices;
pub mod eval;
pub mod recording;
mod shared;
pub mod token;
pub mod train;
pub mod twin;

pub use shared::Global;
