//! A client's tensors and batches: any shape (u32 dimensions whose
//! product overflows), any bytes. The decoder must refuse, never panic or
//! allocate what the shape claims before checking the bytes.
#![no_main]

use hilt_proto::v1;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    x_shape: Vec<u32>,
    x_data: Vec<u8>,
    theta_shape: Vec<u32>,
    theta_data: Vec<u8>,
    repeats: u32,
    return_repeats: bool,
}

fuzz_target!(|i: Input| {
    let x = v1::Tensor {
        shape: i.x_shape,
        data: i.x_data,
    };
    let theta = v1::Tensor {
        shape: i.theta_shape,
        data: i.theta_data,
    };
    let _ = hilt_proto::array2_from_tensor("x", &x);
    let _ = hilt_proto::array3_from_tensor("y_repeats", &x);
    let batch = v1::Batch {
        x: Some(x),
        theta: Some(theta),
        repeats: i.repeats,
        return_repeats: i.return_repeats,
    };
    let _ = hilt_core::Batch::try_from(&batch);
});
