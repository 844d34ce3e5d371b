//! Conversions between the ndarray arrays of data sets and measurements
//! and candle's tensors, shared by the networks and the twins.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// `[rows, cols]` f32 tensor from an ndarray.
pub fn tensor2(a: &ndarray::Array2<f32>) -> Result<Tensor> {
    let a = a.as_standard_layout();
    Ok(Tensor::from_slice(
        a.as_slice().unwrap_or_default(),
        a.dim(),
        &Device::Cpu,
    )?)
}

/// The ndarray of a `[rows, cols]` tensor (what a batch sent to a device
/// is made of).
pub fn array2(t: &Tensor) -> Result<ndarray::Array2<f32>> {
    let (r, c) = t.dims2()?;
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    ndarray::Array2::from_shape_vec((r, c), v).map_err(|e| Error::invalid(e.to_string()))
}
