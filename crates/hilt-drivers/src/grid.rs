//! Where a value sent to a rig really lands: the actuator's grid and the
//! hard limits. The simulator applies it, and the serial host snaps to it
//! before sending, so both backends play exactly the same values.

use hilt_core::{DeviceSpec, Range};

/// The part of a spec the measurement loop needs: limits and grid steps.
/// Copied per batch instead of the whole spec (strings, maps).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) input: Range,
    pub(crate) input_step: f32,
    pub(crate) param: Range,
    pub(crate) param_step: f32,
}

impl Grid {
    pub(crate) fn of(spec: &DeviceSpec) -> Self {
        Grid {
            input: spec.input_range,
            input_step: spec.input_step,
            param: spec.param_range,
            param_step: spec.param_step,
        }
    }

    /// What a host does before sending values to a board: onto the
    /// actuator grid, then inside the hard limits. The grid is the models'
    /// own (`round(v·L)/L`, `L` levels per unit), so the board's
    /// quantisation of a snapped value is the identity and what it plays is
    /// exactly what the in-process simulator would have played.
    pub(crate) fn snap(&self, x: &mut [f32], theta: &mut [f32]) {
        fn on_grid(values: &mut [f32], step: f32) {
            if step > 0.0 {
                let levels = (1.0 / step).round();
                values
                    .iter_mut()
                    .for_each(|v| *v = (*v * levels).round() / levels);
            }
        }
        on_grid(x, self.input_step);
        keep_inside(x, self.input, self.input_step);
        on_grid(theta, self.param_step);
        keep_inside(theta, self.param, self.param_step);
    }

    /// How far a board's applied input may sit from a snapped value sent
    /// to it: its own rounding (half a step) and float noise, never a
    /// different drive's value.
    pub(crate) fn input_tolerance(&self) -> f32 {
        0.5 * self.input_step + 1e-6 * self.input.width()
    }

    pub(crate) fn param_tolerance(&self) -> f32 {
        0.5 * self.param_step + 1e-6 * self.param.width()
    }
}
/// Rounding to the actuator grid moves a value by up to half a step, which
/// can carry a clamped value just past its hard limit; step back onto the
/// nearest grid point inside. (`SimDevice::new` guarantees one exists.)
///
/// Every value is written back, moved or not: a store under a branch kept
/// the loop scalar (half of a 256 × 64 loopback sweep's time), selects
/// let it vectorise, with the same bits.
pub(crate) fn keep_inside(values: &mut [f32], limit: Range, step: f32) {
    // Without a grid (step 0) a value inside the limits, as validation
    // leaves every one, stays as it is: skipping the pass changes no bit
    // and saves a loopback sweep a third of its time.
    if step == 0.0 {
        return;
    }
    for v in values {
        let x = *v;
        *v = if x > limit.max {
            x - step
        } else if x < limit.min {
            x + step
        } else {
            x
        };
    }
}
