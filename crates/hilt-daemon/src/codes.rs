//! Two of a client's mistakes that tonic reports before any hiltd code
//! runs, with codes this API gives other meanings: a message over the size
//! limit comes back `OUT_OF_RANGE` (here: a value outside a device's hard
//! limits) and one that does not decode comes back `INTERNAL` (here: a
//! fault of the daemon). Both are rewritten on the way out, so a client
//! can act on the code alone: `RESOURCE_EXHAUSTED` (split the batch) and
//! `INVALID_ARGUMENT` (fix the request).

use http::HeaderMap;
use tonic::{Code, Status};

use crate::server::MAX_MESSAGE_BYTES;

/// `status` with the code this API documents for it.
pub fn fix(status: Status) -> Status {
    let m = status.message();
    match status.code() {
        Code::OutOfRange if m.starts_with("Error, decoded message length too large") => {
            Status::resource_exhausted(format!(
                "request too large: {m} (hiltd takes at most {} MiB per message; split the \
                 batch)",
                MAX_MESSAGE_BYTES >> 20
            ))
        }
        Code::Internal if m.starts_with("failed to decode Protobuf message") => {
            Status::invalid_argument(format!("the request does not decode: {m}"))
        }
        _ => status,
    }
}

/// Rewrite a trailers-only error response (what tonic sends when decoding
/// fails) in place.
pub fn fix_headers(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let code = status.code();
    let fixed = fix(status);
    if fixed.code() == code {
        return;
    }
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(h);
    }
    if let Err(e) = fixed.add_header(headers) {
        tracing::warn!("could not rewrite a status header: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_size_and_decode_errors_get_this_apis_codes() {
        let big = Status::out_of_range(
            "Error, decoded message length too large: found 70000000 bytes, the limit is: \
             67108864 bytes",
        );
        let mut h = HeaderMap::new();
        big.add_header(&mut h).unwrap();
        fix_headers(&mut h);
        let s = Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("at most 64 MiB"), "{}", s.message());

        let bad = Status::internal("failed to decode Protobuf message: invalid wire type");
        assert_eq!(fix(bad).code(), Code::InvalidArgument);
        // Everything else is left as it is: hiltd's own OUT_OF_RANGE too.
        let limit = Status::out_of_range("batch.x[0, 3]: 2 is outside [0, 1]");
        assert_eq!(fix(limit).code(), Code::OutOfRange);
    }
}
