//! The faults a lab link suffers, injected at configured rates with a
//! seeded generator so a failing run can be replayed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-frame fault rates (each in `[0, 1]`) and their parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// A byte of the frame is replaced by another value.
    pub corrupt: f64,
    /// The frame vanishes.
    pub drop: f64,
    /// The frame is sent twice.
    pub dup: f64,
    /// The reply waits `stall_ms` before it is sent.
    pub stall: f64,
    /// How long a stalled reply waits.
    pub stall_ms: u64,
    /// After this many requests the board is unplugged as the next one
    /// arrives (0: never), and comes back `replug_after_ms` later on a new
    /// pseudo-terminal.
    pub unplug_every: u64,
    /// Time unplugged before the new pseudo-terminal appears.
    pub replug_after_ms: u64,
}

impl FaultConfig {
    /// Checks every rate, naming the flag that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, r) in [
            ("--corrupt-rate", self.corrupt),
            ("--drop-rate", self.drop),
            ("--dup-rate", self.dup),
            ("--stall-rate", self.stall),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{flag} {r} is not a probability in [0, 1]"));
            }
        }
        Ok(())
    }
}

/// What happens to one outgoing frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    /// Wait this long before sending (0: at once).
    pub stall_ms: u64,
    /// 0, 1 or 2 copies.
    pub copies: usize,
    /// `(index, xor mask)` of a corrupted byte.
    pub corrupt: Option<(usize, u8)>,
}

/// The seeded fault generator: the same seed gives the same faults in the
/// same places, so a failing fault run can be replayed.
#[derive(Debug)]
pub struct Faults {
    cfg: FaultConfig,
    rng: ChaCha8Rng,
}

impl Faults {
    /// Faults at `cfg`'s rates, drawn from `seed`.
    pub fn new(cfg: FaultConfig, seed: u64) -> Self {
        Faults {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The rates in force.
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// Whether an incoming request arrives corrupted (the board then
    /// answers BadFrame, as a board receiving line noise does) or is lost.
    pub fn incoming(&mut self) -> (bool, bool) {
        let corrupt = self.rng.random_bool(self.cfg.corrupt);
        let lost = self.rng.random_bool(self.cfg.drop);
        (corrupt, lost)
    }

    /// The fate of an outgoing frame of `len` bytes.
    pub fn outgoing(&mut self, len: usize) -> Fate {
        let stall_ms = if self.rng.random_bool(self.cfg.stall) {
            self.cfg.stall_ms
        } else {
            0
        };
        let copies = if self.rng.random_bool(self.cfg.drop) {
            0
        } else if self.rng.random_bool(self.cfg.dup) {
            2
        } else {
            1
        };
        let corrupt = (len > 0 && self.rng.random_bool(self.cfg.corrupt)).then(|| {
            (
                self.rng.random_range(0..len),
                self.rng.random_range(1..=255u8),
            )
        });
        Fate {
            stall_ms,
            copies,
            corrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_honoured_and_a_seed_replays() {
        let cfg = FaultConfig {
            corrupt: 0.1,
            drop: 0.2,
            dup: 0.3,
            stall: 0.05,
            stall_ms: 9,
            ..FaultConfig::default()
        };
        let mut f = Faults::new(cfg.clone(), 4);
        let n = 20_000;
        let fates: Vec<Fate> = (0..n).map(|_| f.outgoing(100)).collect();
        let share =
            |p: &dyn Fn(&Fate) -> bool| fates.iter().filter(|x| p(x)).count() as f64 / n as f64;
        assert!((share(&|x| x.copies == 0) - 0.2).abs() < 0.015);
        assert!((share(&|x| x.copies == 2) - 0.8 * 0.3).abs() < 0.015);
        assert!((share(&|x| x.corrupt.is_some()) - 0.1).abs() < 0.015);
        assert!((share(&|x| x.stall_ms == 9) - 0.05).abs() < 0.01);
        assert!(
            fates
                .iter()
                .filter_map(|x| x.corrupt)
                .all(|(i, m)| i < 100 && m != 0)
        );
        let mut again = Faults::new(cfg, 4);
        assert!(fates.iter().all(|x| *x == again.outgoing(100)));
    }

    #[test]
    fn a_rate_outside_zero_one_names_its_flag() {
        let cfg = FaultConfig {
            dup: 1.5,
            ..FaultConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err(),
            "--dup-rate 1.5 is not a probability in [0, 1]"
        );
    }
}
