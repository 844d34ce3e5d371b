//! Tensors on the wire: shape + packed little-endian f32.

use std::sync::Arc;

use bytes::Bytes;
use hilt_core::Measurement;
use ndarray::{Array2, Array3};

use crate::error::ConvertError;
use crate::v1::Tensor;

/// Shape `[rows, cols]`, values in row-major order.
pub fn tensor_from_array2(a: &Array2<f32>) -> Tensor {
    pack(&[a.nrows(), a.ncols()], a.as_slice(), a.iter())
}

/// Shape `[d0, d1, d2]`, values in row-major order.
pub fn tensor_from_array3(a: &Array3<f32>) -> Tensor {
    let (r, b, c) = a.dim();
    pack(&[r, b, c], a.as_slice(), a.iter())
}

/// `contiguous` (the values in row-major order, when they lie so in
/// memory) is copied as it is on a little-endian machine, where an f32's
/// bytes are already the wire's: the large tensors of every batch and
/// answer cost one `memcpy`, not a loop over the values.
fn pack<'a>(
    shape: &[usize],
    contiguous: Option<&[f32]>,
    values: impl Iterator<Item = &'a f32>,
) -> Tensor {
    let data = match contiguous {
        Some(v) if cfg!(target_endian = "little") => {
            Bytes::from(bytemuck::cast_slice::<f32, u8>(v).to_vec())
        }
        _ => {
            let mut data = Vec::with_capacity(shape.iter().product::<usize>() * 4);
            for v in values {
                data.extend_from_slice(&v.to_le_bytes());
            }
            Bytes::from(data)
        }
    };
    Tensor {
        shape: wire_shape(shape),
        data,
    }
}

/// A shape as the wire carries it (a dimension past u32 saturates; no
/// array here is that large).
fn wire_shape(shape: &[usize]) -> Vec<u32> {
    shape
        .iter()
        .map(|&d| u32::try_from(d).unwrap_or(u32::MAX))
        .collect()
}

/// An array of a shared measurement, lent to the wire: its bytes are the
/// array's own memory.
struct Lent {
    m: Arc<Measurement>,
    pick: fn(&Measurement) -> &Array2<f32>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // Made only for a contiguous array (see `tensor_lent`), which a
        // shared measurement keeps.
        (self.pick)(&self.m)
            .as_slice()
            .map(bytemuck::cast_slice)
            .unwrap_or_default()
    }
}

/// The array `pick` chooses of `m`, as a tensor that shares its memory on
/// a little-endian machine (the answer's large arrays reach the encoder
/// without a copy of their own); a copy otherwise.
pub fn tensor_lent(m: &Arc<Measurement>, pick: fn(&Measurement) -> &Array2<f32>) -> Tensor {
    let a = pick(m);
    if !cfg!(target_endian = "little") || a.as_slice().is_none() {
        return tensor_from_array2(a);
    }
    Tensor {
        shape: wire_shape(&[a.nrows(), a.ncols()]),
        data: Bytes::from_owner(Lent {
            m: Arc::clone(m),
            pick,
        }),
    }
}

/// A rank-2 tensor as an array; errors name `field` and say what is wrong
/// with the shape or the byte count. Values are not checked (NaN passes).
pub fn array2_from_tensor(field: &str, t: &Tensor) -> Result<Array2<f32>, ConvertError> {
    let (shape, values) = unpack(field, t, 2)?;
    Array2::from_shape_vec((shape[0], shape[1]), values)
        .map_err(|e| ConvertError::new(field, e.to_string()))
}

/// A rank-3 tensor as an array, checked like [`array2_from_tensor`].
pub fn array3_from_tensor(field: &str, t: &Tensor) -> Result<Array3<f32>, ConvertError> {
    let (shape, values) = unpack(field, t, 3)?;
    Array3::from_shape_vec((shape[0], shape[1], shape[2]), values)
        .map_err(|e| ConvertError::new(field, e.to_string()))
}

fn unpack(field: &str, t: &Tensor, rank: usize) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    if t.shape.len() != rank {
        return Err(ConvertError::new(
            field,
            format!("expected a rank-{rank} tensor, got shape {:?}", t.shape),
        ));
    }
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|c| c.checked_mul(4).is_some())
        .ok_or_else(|| ConvertError::new(field, format!("shape {:?} is too large", t.shape)))?;
    if !t.data.len().is_multiple_of(4) {
        return Err(ConvertError::new(
            field,
            format!(
                "{} data bytes are not a whole number of 4-byte f32 values",
                t.data.len()
            ),
        ));
    }
    if t.data.len() != count * 4 {
        return Err(ConvertError::new(
            field,
            format!(
                "shape {:?} needs {} bytes ({count} little-endian f32), got {}",
                t.shape,
                count * 4,
                t.data.len()
            ),
        ));
    }
    // One copy into aligned memory on a little-endian machine (the
    // received bytes need not be 4-byte aligned).
    let values = if cfg!(target_endian = "little") {
        bytemuck::pod_collect_to_vec::<u8, f32>(&t.data)
    } else {
        t.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use ndarray::{ShapeBuilder, array};

    use super::*;

    #[test]
    fn round_trip_is_bit_exact_and_little_endian() {
        let a = array![[1.0f32, -0.5, f32::MIN_POSITIVE], [3.25, 0.0, 1e30]];
        let t = tensor_from_array2(&a);
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(&t.data[4..8], &(-0.5f32).to_le_bytes());
        assert_eq!(array2_from_tensor("x", &t).unwrap(), a);
    }

    #[test]
    fn any_memory_layout_and_any_alignment_give_the_same_bits() {
        let nan = f32::from_bits(0x7fc0_1234);
        let a = array![[1.0f32, nan, -0.0], [3.25, f32::INFINITY, 1e-40]];
        // Column-major in memory: packed value by value, in row-major order.
        let mut f = Array2::zeros(a.dim().f());
        f.assign(&a);
        assert!(f.as_slice().is_none());
        let (ta, tf) = (tensor_from_array2(&a), tensor_from_array2(&f));
        assert_eq!(ta, tf);
        // Bytes that start one past an aligned address decode alike.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&ta.data);
        let t = Tensor {
            shape: ta.shape.clone(),
            data: Bytes::copy_from_slice(&shifted[1..]),
        };
        let back = array2_from_tensor("x", &t).unwrap();
        let bits = |m: &Array2<f32>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&a));
    }

    #[test]
    fn a_lent_array_is_the_copied_one_and_outlives_its_measurement() {
        let y = array![[0.5f32, -2.0], [f32::NAN, 7.0]];
        let mut m = Measurement {
            y: y.clone(),
            y_repeats: None,
            y_std: None,
            applied_x: array![[1.0f32], [2.0]],
            applied_theta: array![[0.0f32]],
            flags: Vec::new(),
            t_start: Vec::new(),
            t_end: Vec::new(),
            wall_start: std::time::SystemTime::UNIX_EPOCH,
            wall_end: std::time::SystemTime::UNIX_EPOCH,
            calibration_id: String::new(),
            device_id: String::new(),
        };
        // Column-major applied x: not lent, copied in row-major order.
        let mut fx = Array2::zeros((2, 1).f());
        fx.assign(&m.applied_x);
        m.applied_x = fx;
        let shared = Arc::new(m);
        let (ty, tx) = (
            tensor_lent(&shared, |m| &m.y),
            tensor_lent(&shared, |m| &m.applied_x),
        );
        assert_eq!(ty, tensor_from_array2(&y));
        assert_eq!(tx, tensor_from_array2(&array![[1.0f32], [2.0]]));
        drop(shared);
        let back = array2_from_tensor("y", &ty).unwrap();
        assert_eq!(back.mapv(f32::to_bits), y.mapv(f32::to_bits));
    }

    #[test]
    fn malformed_bytes_name_the_field() {
        let mut t = tensor_from_array2(&array![[1.0f32, 2.0]]);
        t.data.truncate(7);
        let e = array2_from_tensor("batch.x", &t).unwrap_err();
        assert!(e.to_string().starts_with("batch.x: 7 data bytes"), "{e}");
        t.data.truncate(4);
        let e = array2_from_tensor("batch.x", &t).unwrap_err();
        assert!(e.to_string().contains("needs 8 bytes"), "{e}");
        let t = Tensor {
            shape: vec![u32::MAX, u32::MAX],
            data: Bytes::new(),
        };
        assert!(
            array2_from_tensor("batch.x", &t)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        let t = Tensor {
            shape: vec![4],
            data: vec![0; 16].into(),
        };
        assert!(
            array2_from_tensor("batch.x", &t)
                .unwrap_err()
                .to_string()
                .contains("rank-2")
        );
    }
}
