//! Typed async client for hiltd.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hilt_client::ClientError> {
//! use std::time::Duration;
//! let client = hilt_client::Client::connect("http://127.0.0.1:50051").await?;
//! let lease = client.acquire("shg-readout", Duration::from_secs(30)).await?;
//! let x = ndarray::Array2::from_elem((32, 12), 0.5f32);
//! let m = lease.execute(&hilt_core::Batch::shared(x, &[0.5; 40])).await?;
//! println!("{:?}", m.y.dim());
//! lease.release().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod connect;
mod error;
mod lease;
mod stream;

pub use client::Client;
pub use connect::{Bearer, ConnectOptions, RawClient};
pub use error::ClientError;
pub use hilt_proto::v1;
pub use lease::Lease;
pub use stream::{BatchStream, StreamReceiver, StreamSender};
