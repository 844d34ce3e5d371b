//! The optimiser and learning-rate schedule shared by twin fitting and
//! network training: both use Adam without weight decay and a cosine decay
//! to a floor, and keeping them in one place keeps a change to one from
//! silently diverging from the other.

use candle_core::Var;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::error::Result;

/// Adam (AdamW with no weight decay: the parameters are physical settings
/// and rescale gains, which no prior pulls towards zero) at rate `lr`.
pub fn adam(vars: Vec<Var>, lr: f64) -> Result<AdamW> {
    Ok(AdamW::new(
        vars,
        ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?)
}

/// Cosine decay from 1 to `floor` over `total` steps: a late, small rate
/// lets Adam settle where a constant one keeps jittering around the optimum,
/// and the floor keeps the last epochs learning at all.
#[derive(Debug, Clone, Copy)]
pub struct Cosine {
    floor: f64,
    total: f64,
}

impl Cosine {
    /// A schedule over `steps` optimiser steps that ends at `floor` times
    /// the initial rate.
    pub fn new(floor: f64, steps: usize) -> Self {
        Cosine {
            floor,
            total: steps as f64,
        }
    }

    /// The factor on the initial rate at `step` (0-based).
    pub fn factor(&self, step: usize) -> f64 {
        self.floor
            + (1.0 - self.floor)
                * 0.5
                * (1.0 + (std::f64::consts::PI * step as f64 / self.total).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factors are those of the two schedules this one replaced, to
    /// the bit.
    #[test]
    fn the_factors_match_the_formulas_they_replaced() {
        for (floor, steps) in [(0.05, 317), (0.01, 1000)] {
            let c = Cosine::new(floor, steps);
            let total = steps as f64;
            for step in [0, 1, 7, steps / 2, steps - 1] {
                let old = if floor == 0.05 {
                    0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
                } else {
                    0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos())
                };
                assert_eq!(c.factor(step).to_bits(), old.to_bits());
            }
        }
    }
}
