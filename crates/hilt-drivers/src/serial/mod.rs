//! The serial path to a real interface board (`docs/wire-protocol.md`).
//! `link.rs` is the request/reply discipline over any byte stream: one
//! request outstanding, replies matched by sequence number, per-request
//! timeouts, stale input flushed after a fault, idempotent requests
//! retried.

mod link;

pub use link::{Link, LinkError, LinkOptions, LinkStats};
