//! hiltd's cross-process tests, as one test binary: each file is a module
//! of it, so the binary (tonic, rustls, the client, proptest) is linked
//! once instead of once per file. Every test starts the real `hiltd`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

#[path = "auth.rs"]
mod auth;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "e2e.rs"]
mod e2e;
#[path = "leases.rs"]
mod leases;
#[path = "recording.rs"]
mod recording;
#[path = "reflection.rs"]
mod reflection;
#[path = "replay.rs"]
mod replay;
#[path = "requests_proptest.rs"]
mod requests_proptest;
#[path = "serial.rs"]
mod serial;
