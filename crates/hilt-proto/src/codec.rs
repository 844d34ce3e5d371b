//! hilt.v1's gRPC codec (server and client): prost's, except that an
//! outgoing message reserves its encoded length before it is written.
//!
//! tonic's encode buffer starts at 8 KiB and grows as prost writes field
//! after field, so a measurement (answers, applied inputs, clocks) is
//! reallocated, and everything already written copied, once per large
//! field: at 256 × 64 a copy of 64 KiB per answer, in both directions of
//! a `Stream`. Asking first costs one more walk over the message's
//! lengths (prost's `encode` makes another), never over its tensors' bytes.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// Named by the generated services in place of `tonic_prost::ProstCodec`.
#[derive(Debug, Clone)]
pub struct SizedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes `T` into room reserved for all of it at once.
#[derive(Debug, Clone)]
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        // `EncodeBuf` grows without bound, so prost's only error (too
        // little room) cannot happen; should it ever, the call fails.
        item.encode(buf)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};
    use tonic::codec::{EncodeBody, Streaming};

    use super::*;
    use crate::v1;

    #[tokio::test]
    async fn a_message_goes_out_as_prosts_bytes_and_comes_back() {
        let m = v1::Tensor {
            shape: vec![256, 64],
            data: (0..256 * 64 * 4)
                .map(|i| i as u8)
                .collect::<Vec<_>>()
                .into(),
        };
        let mut codec = SizedCodec::<v1::Tensor, v1::Tensor>::default();
        let body = EncodeBody::new_client(
            codec.encoder(),
            tokio_stream::iter([Ok::<_, Status>(m.clone())]),
            None,
            None,
        );
        let wire = body.collect().await.unwrap().to_bytes();
        let prost = m.encode_to_vec();
        // gRPC's frame: uncompressed, big-endian length, then the message.
        assert_eq!(wire[0], 0);
        assert_eq!(&wire[1..5], (prost.len() as u32).to_be_bytes().as_slice());
        assert_eq!(&wire[5..], prost.as_slice());
        let mut back = Streaming::new_request(codec.decoder(), Full::new(wire), None, None);
        assert_eq!(back.message().await.unwrap(), Some(m));
        assert_eq!(back.message().await.unwrap(), None);
    }

    #[test]
    fn the_generated_services_use_it() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/hilt.v1.rs"));
        assert!(generated.contains("crate::codec::SizedCodec::default()"));
        assert!(!generated.contains("ProstCodec"));
    }
}
