//! Server-side hard limits. Trainers penalise out-of-range parameters only
//! softly (PAT's "lagrangian"), so overshoots are normal traffic; the
//! daemon is the last line of defence for the hardware and must refuse or
//! clamp them, visibly, before a device sees them.

use ndarray::Array2;

use crate::{Batch, DeviceSpec, Error, LimitPolicy, Range};

/// A batch that passed [`validate`]: shapes match the device, every value
/// is finite and inside the hard limits, and both arrays are row-major
/// (devices apply and send a batch row by row). Devices accept only this
/// type, so unchecked input cannot reach hardware by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidBatch {
    batch: Batch,
    clamped: Vec<bool>,
}

impl ValidBatch {
    /// `[B, n_in]`, finite and inside the input limits.
    pub fn x(&self) -> &Array2<f32> {
        &self.batch.x
    }

    /// `[1, n_par]` (shared) or `[B, n_par]`, finite and inside the
    /// parameter limits.
    pub fn theta(&self) -> &Array2<f32> {
        &self.batch.theta
    }

    /// Parameter row used for batch row `i` (shared or per-row).
    pub fn theta_row(&self, i: usize) -> ndarray::ArrayView1<'_, f32> {
        let t = &self.batch.theta;
        t.row(if t.nrows() == 1 { 0 } else { i })
    }

    /// B, at least 1 and at most the device's `max_batch`.
    pub fn rows(&self) -> usize {
        self.batch.x.nrows()
    }

    /// At least 1 and at most the device's `max_repeats`.
    pub fn repeats(&self) -> u32 {
        self.batch.repeats
    }

    /// Whether the caller wants every repeat back.
    pub fn return_repeats(&self) -> bool {
        self.batch.return_repeats
    }

    /// Per row: a value of it (or of the shared θ row) was clamped under
    /// policy `clamp`.
    pub fn clamped(&self) -> &[bool] {
        &self.clamped
    }

    /// The batch and its clamped rows, for the device that measures it:
    /// what leaves the gate is still what passed it.
    pub fn into_parts(self) -> (Batch, Vec<bool>) {
        (self.batch, self.clamped)
    }
}

/// Check a batch against a device's spec, in the order a user would want
/// to hear about problems: size, shape, numbers, limits.
pub fn validate(spec: &DeviceSpec, batch: Batch) -> Result<ValidBatch, Error> {
    let b = batch.x.nrows();
    if b == 0 {
        return Err(Error::invalid("batch.x", "empty batch (0 rows)"));
    }
    if b > spec.max_batch {
        return Err(Error::TooLarge {
            field: "batch.x".into(),
            reason: format!("{b} rows exceed the device maximum of {}", spec.max_batch),
        });
    }
    if batch.x.ncols() != spec.n_in {
        return Err(Error::invalid(
            "batch.x",
            format!(
                "expected shape [B, {}], got [{b}, {}]",
                spec.n_in,
                batch.x.ncols()
            ),
        ));
    }
    let tr = batch.theta.nrows();
    if tr != 1 && tr != b {
        return Err(Error::invalid(
            "batch.theta",
            format!("expected 1 or {b} rows (one shared row or one per x row), got {tr}"),
        ));
    }
    if batch.theta.ncols() != spec.n_par {
        return Err(Error::invalid(
            "batch.theta",
            format!(
                "expected shape [{tr}, {}], got [{tr}, {}]",
                spec.n_par,
                batch.theta.ncols()
            ),
        ));
    }
    if batch.repeats == 0 {
        return Err(Error::invalid("batch.repeats", "must be at least 1"));
    }
    if batch.repeats > spec.max_repeats {
        return Err(Error::TooLarge {
            field: "batch.repeats".into(),
            reason: format!(
                "{} exceeds the device maximum of {}",
                batch.repeats, spec.max_repeats
            ),
        });
    }
    // Row-major from here on, whatever a caller built (the wire's arrays
    // always are, and pass through untouched).
    let batch = Batch {
        x: rows_first(batch.x),
        theta: rows_first(batch.theta),
        ..batch
    };
    // The common case, every value finite and inside its range, in one
    // pass the compiler vectorises; the passes below, which say where a
    // value is wrong, run only when one is.
    if all_finite_within(&batch.x, spec.input_range)
        && all_finite_within(&batch.theta, spec.param_range)
    {
        return Ok(ValidBatch {
            batch,
            clamped: vec![false; b],
        });
    }
    check_finite("batch.x", &batch.x)?;
    check_finite("batch.theta", &batch.theta)?;

    let mut batch = batch;
    let mut clamped = vec![false; b];
    let x_clamped = enforce("batch.x", &mut batch.x, spec.input_range, spec.limit_policy)?;
    let t_clamped = enforce(
        "batch.theta",
        &mut batch.theta,
        spec.param_range,
        spec.limit_policy,
    )?;
    for (i, c) in clamped.iter_mut().enumerate() {
        let t_row = if tr == 1 { 0 } else { i };
        *c = x_clamped[i] || t_clamped[t_row];
    }
    Ok(ValidBatch { batch, clamped })
}

fn rows_first(a: Array2<f32>) -> Array2<f32> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Whether every value of `a` is finite and inside `range`. Inside a
/// finite range is finite (NaN and ±∞ fail one of the comparisons), so a
/// contiguous array under a finite range takes one branch-free pass.
fn all_finite_within(a: &Array2<f32>, range: Range) -> bool {
    let finite = range.min.is_finite() && range.max.is_finite();
    match a.as_slice_memory_order() {
        Some(s) if finite => within(s, range),
        _ => a.iter().all(|v| v.is_finite() && range.contains(*v)),
    }
}

/// Vectorised (eight at a time where the CPU has AVX2): a 256 × 64 batch
/// in about 2 µs, about as fast as the cache hands it over.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn within(s: &[f32], range: Range) -> bool {
    s.iter()
        .fold(true, |acc, &v| acc & (v >= range.min) & (v <= range.max))
}

fn check_finite(field: &'static str, a: &Array2<f32>) -> Result<(), Error> {
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((r, c), v)) => Err(Error::invalid(
            format!("{field}[{r}, {c}]"),
            format!("{v} is not a finite number"),
        )),
    }
}

/// Apply the limit policy in place; returns which rows were clamped.
fn enforce(
    field: &'static str,
    a: &mut Array2<f32>,
    range: Range,
    policy: LimitPolicy,
) -> Result<Vec<bool>, Error> {
    let mut rows = vec![false; a.nrows()];
    for ((r, c), v) in a.indexed_iter_mut() {
        if range.contains(*v) {
            continue;
        }
        match policy {
            LimitPolicy::Reject => {
                return Err(Error::OutOfRange {
                    field,
                    row: r,
                    col: c,
                    value: *v,
                    min: range.min,
                    max: range.max,
                });
            }
            LimitPolicy::Clamp => {
                *v = range.clamp(*v);
                rows[r] = true;
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ndarray::array;

    use super::*;
    use crate::{Backend, FirmwareIdentity};

    fn spec(policy: LimitPolicy) -> DeviceSpec {
        DeviceSpec {
            id: "d".into(),
            kind: "loopback".into(),
            backend: Backend::Sim,
            model: String::new(),
            seed: 0,
            n_in: 2,
            input_range: Range::new(0.0, 1.0),
            n_par: 1,
            param_range: Range::new(-1.0, 1.0),
            n_out: 2,
            input_unit: String::new(),
            param_unit: String::new(),
            output_unit: String::new(),
            limit_policy: policy,
            max_batch: 4,
            max_repeats: 8,
            seconds_per_sample: 0.0,
            hyperparameters: BTreeMap::new(),
            calibration_id: String::new(),
            firmware: FirmwareIdentity::default(),
            encoding: None,
            input_step: 0.0,
            param_step: 0.0,
        }
    }

    fn batch(x: Array2<f32>, theta: Array2<f32>) -> Batch {
        Batch {
            x,
            theta,
            repeats: 1,
            return_repeats: false,
        }
    }

    #[test]
    fn reject_names_field_row_and_column() {
        let err = validate(
            &spec(LimitPolicy::Reject),
            batch(array![[0.1, 0.2], [0.3, 1.5]], array![[0.0]]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::OutOfRange {
                field: "batch.x",
                row: 1,
                col: 1,
                value: 1.5,
                min: 0.0,
                max: 1.0
            }
        );
        assert!(err.to_string().contains("batch.x[1, 1] = 1.5"));
    }

    #[test]
    fn clamp_flags_only_affected_rows_and_shared_theta_flags_all() {
        let v = validate(
            &spec(LimitPolicy::Clamp),
            batch(array![[0.1, 0.2], [0.3, 1.5], [0.0, 0.0]], array![[0.0]]),
        )
        .unwrap();
        assert_eq!(v.clamped(), &[false, true, false]);
        assert_eq!(v.x()[[1, 1]], 1.0);

        let v = validate(
            &spec(LimitPolicy::Clamp),
            batch(array![[0.1, 0.2], [0.3, 0.4]], array![[-3.0]]),
        )
        .unwrap();
        assert_eq!(v.clamped(), &[true, true]);
        assert_eq!(v.theta()[[0, 0]], -1.0);
    }

    #[test]
    fn nan_is_invalid_even_under_clamp() {
        let err = validate(
            &spec(LimitPolicy::Clamp),
            batch(array![[0.1, f32::NAN]], array![[0.0]]),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { ref field, .. } if field == "batch.x[0, 1]")
        );
    }

    #[test]
    fn a_column_major_batch_leaves_the_gate_row_major_with_its_values() {
        let x = array![[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]];
        let mut cols = Array2::zeros(ndarray::ShapeBuilder::f(x.raw_dim()));
        cols.assign(&x);
        assert!(!cols.is_standard_layout());
        let cols = batch(cols, array![[0.0]]);
        let v = validate(&spec(LimitPolicy::Reject), cols).unwrap();
        assert!(v.x().is_standard_layout() && v.theta().is_standard_layout());
        assert_eq!(v.x(), &x);
    }

    #[test]
    fn theta_rows_must_be_one_or_b() {
        let err = validate(
            &spec(LimitPolicy::Reject),
            batch(
                array![[0.1, 0.2], [0.1, 0.2], [0.1, 0.2]],
                array![[0.0], [0.0]],
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected 1 or 3 rows"), "{err}");
    }

    fn value() -> impl proptest::strategy::Strategy<Value = f32> {
        use proptest::prelude::*;
        prop_oneof![
            8 => -3.0f32..3.0,
            8 => 0.0f32..1.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
        ]
    }

    proptest::proptest! {
        /// Whatever the numbers, a batch that validates holds only finite
        /// values inside the limits: the device can never see anything
        /// else. A batch of finite values inside them passes untouched
        /// under either policy, and a clamped row is exactly one that had
        /// a value outside.
        #[test]
        fn valid_batches_are_always_inside_limits(
            xs in proptest::collection::vec(value(), 6),
            t in value(),
            clamp in proptest::bool::ANY,
        ) {
            let policy = if clamp { LimitPolicy::Clamp } else { LimitPolicy::Reject };
            let x = Array2::from_shape_vec((3, 2), xs).unwrap();
            let finite = x.iter().all(|v| v.is_finite()) && t.is_finite();
            let t_out = !(-1.0..=1.0).contains(&t);
            let row_out: Vec<bool> = x
                .rows()
                .into_iter()
                .map(|r| t_out || r.iter().any(|v| !(0.0..=1.0).contains(v)))
                .collect();
            let result = validate(&spec(policy), batch(x.clone(), array![[t]]));
            proptest::prop_assert_eq!(result.is_ok(), finite && (clamp || !row_out.contains(&true)));
            if let Ok(v) = result {
                proptest::prop_assert!(v.x().iter().all(|v| (0.0..=1.0).contains(v)));
                proptest::prop_assert!(v.theta().iter().all(|v| (-1.0..=1.0).contains(v)));
                proptest::prop_assert_eq!(v.clamped(), row_out.as_slice());
                if !row_out.contains(&true) {
                    proptest::prop_assert_eq!(v.x(), &x);
                }
            }
        }
    }
}
