//! The hilt.v1 gRPC API: code generated from `proto/hilt/v1/*.proto` and
//! the one place where wire messages and `hilt_core` types meet, so the
//! daemon and the client decode a tensor the same way.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("hilt.v1");
}

/// The benchmarks' bare echo service (`proto/hilt/echo/v1`): what tonic
/// alone costs for messages of hilt's sizes. hiltd never serves it.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod echo {
    tonic::include_proto!("hilt.echo.v1");
}

mod codec;
mod convert;
mod error;
mod status;
mod tensor;

pub use codec::{SizedCodec, SizedEncoder};
pub use error::ConvertError;
pub use status::status_to_proto;
pub use tensor::{array2_from_tensor, array3_from_tensor, tensor_from_array2, tensor_from_array3};

/// Encoded `FileDescriptorSet` of hilt.v1 (with its imports), for server
/// reflection: lets grpcurl and any generic client explore the API.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hilt_descriptor.bin"));
