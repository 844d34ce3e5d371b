//! One batch as LoadDrive/Acquire rounds on a board, and the board's
//! answers checked and assembled into the same `Measurement` the
//! in-process simulator returns.

use std::time::{Duration, SystemTime};

use hilt_core::{Measurement, SampleFlags, ValidBatch, reduce_repeats};
use hilt_wire::{Acquisition, Capabilities, Drive, ErrorCode, MAX_BODY, Message};
use ndarray::{Array2, Array3, Axis, Slice};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Link, LinkError};
use crate::grid::Grid;

/// Why a batch got no measurement, sorted by what the driver does next.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The port is gone or the board lost its state: reconnect.
    #[error("{0}")]
    Lost(String),
    /// This exchange failed on the link; the same batch may succeed if the
    /// caller sends it again.
    #[error("{0}")]
    Retry(String),
    /// The instrument behind the board failed.
    #[error("{0}")]
    Hardware(String),
    /// The board answered something no correct board answers.
    #[error("{0}")]
    Protocol(String),
}

impl Failure {
    fn from_link(step: &str, e: LinkError) -> Failure {
        let text = format!("{step}: {e}");
        match &e {
            LinkError::Closed | LinkError::Io(_) => Failure::Lost(text),
            LinkError::Timeout { .. } | LinkError::Corrupt { .. } => Failure::Retry(text),
            LinkError::Refused { refusal, .. } => match refusal.code {
                ErrorCode::BadFrame | ErrorCode::Busy => Failure::Retry(text),
                // A loaded drive vanished: the board reset under us.
                ErrorCode::NotReady => Failure::Lost(text),
                ErrorCode::Hardware => Failure::Hardware(text),
                _ => Failure::Protocol(text),
            },
            LinkError::Unexpected { .. } => Failure::Protocol(text),
        }
    }
}

/// What the driver knows about the connected board that sizes its requests.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub grid: Grid,
    pub n_in: usize,
    pub n_par: usize,
    pub n_out: usize,
    /// Rows one LoadDrive carries: the board's drive memory, and what
    /// fits a frame both ways.
    pub rows_per_load: usize,
    pub max_repeats: u32,
    pub seconds_per_sample: f64,
}

/// Room left in a frame for the message's own framing (lengths, counts).
const FRAME_SLACK: usize = 4096;

impl Plan {
    pub fn new(grid: Grid, caps: &Capabilities) -> Plan {
        let (n_in, n_par, n_out) = (caps.n_in as usize, caps.n_par as usize, caps.n_out as usize);
        // A Result row of one repeat: y, applied values, flag and times.
        let result_row = 4 * (n_out + n_in + n_par) + 1 + 16;
        let load_row = 4 * (n_in + n_par);
        let budget = MAX_BODY - FRAME_SLACK;
        let rows_per_load = (caps.max_rows as usize)
            .min(budget / load_row.max(1))
            .min(budget / result_row)
            .max(1);
        Plan {
            grid,
            n_in,
            n_par,
            n_out,
            rows_per_load,
            max_repeats: caps.max_repeats.max(1),
            seconds_per_sample: caps.seconds_per_sample.max(0.0),
        }
    }

    /// Repeats one Acquire of `rows` rows may ask for and still fit a frame.
    fn repeats_per_acquire(&self, rows: usize) -> u32 {
        let budget = MAX_BODY - FRAME_SLACK;
        let fixed = rows * (4 * (self.n_in + self.n_par) + 1 + 16);
        let per_repeat = (rows * self.n_out * 4).max(1);
        let fit = budget.saturating_sub(fixed) / per_repeat;
        (fit.min(self.max_repeats as usize) as u32).max(1)
    }
}

/// Where one Acquire's rows and repeats go in the batch.
struct Round {
    first_row: usize,
    rows: usize,
    first_repeat: usize,
    repeats: u32,
}

/// The order of rounds reproduces the in-process sweep exactly: every
/// repeat sweeps all rows (ABAB…) before the next begins. A batch that fits
/// one drive is loaded once and acquired in repeat pieces; a larger one is
/// loaded chunk by chunk once per repeat.
fn rounds(plan: &Plan, rows: usize, repeats: u32) -> Vec<Round> {
    if rows <= plan.rows_per_load {
        let step = plan.repeats_per_acquire(rows);
        (0..repeats)
            .step_by(step as usize)
            .map(|r| Round {
                first_row: 0,
                rows,
                first_repeat: r as usize,
                repeats: step.min(repeats - r),
            })
            .collect()
    } else {
        (0..repeats as usize)
            .flat_map(|r| {
                (0..rows).step_by(plan.rows_per_load).map(move |i| Round {
                    first_row: i,
                    rows: plan.rows_per_load.min(rows - i),
                    first_repeat: r,
                    repeats: 1,
                })
            })
            .collect()
    }
}

/// Measures `batch` on the board behind `link`.
pub(crate) async fn measure<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    plan: &Plan,
    batch: &ValidBatch,
) -> Result<Measurement, Failure> {
    let wall_start = SystemTime::now();
    let b = batch.rows();
    let r = batch.repeats() as usize;
    let mut x = batch.x().clone();
    let mut theta = batch.theta().clone();
    let shared = theta.nrows() == 1;
    for mut row in x.rows_mut() {
        plan.grid.snap(
            row.as_slice_mut().expect("owned rows are contiguous"),
            &mut [],
        );
    }
    for mut row in theta.rows_mut() {
        plan.grid.snap(
            &mut [],
            row.as_slice_mut().expect("owned rows are contiguous"),
        );
    }

    let mut all = Array3::<f32>::zeros((r, b, plan.n_out));
    let mut applied_x = Array2::<f32>::zeros(x.raw_dim());
    let mut applied_theta = Array2::<f32>::zeros(theta.raw_dim());
    let mut saturated = vec![false; b];
    let mut t_start = vec![0.0; b];
    let mut t_end = vec![0.0; b];
    let mut loaded = false;
    for round in rounds(plan, b, r as u32) {
        let rows = round.first_row..round.first_row + round.rows;
        // One drive is loaded once; chunks are reloaded every repeat.
        if !loaded || b > plan.rows_per_load {
            let drive = Drive {
                rows: round.rows as u32,
                x: x.slice_axis(Axis(0), Slice::from(rows.clone()))
                    .iter()
                    .copied()
                    .collect(),
                theta: if shared {
                    theta.iter().copied().collect()
                } else {
                    theta
                        .slice_axis(Axis(0), Slice::from(rows.clone()))
                        .iter()
                        .copied()
                        .collect()
                },
            };
            match link.call(&Message::LoadDrive(drive)).await {
                Ok(Message::Loaded { rows: n }) if n as usize == round.rows => {}
                Ok(other) => {
                    return Err(Failure::Protocol(format!(
                        "LoadDrive of {} rows answered {other:?}",
                        round.rows
                    )));
                }
                Err(e) => return Err(Failure::from_link("LoadDrive", e)),
            }
            loaded = true;
        }
        let samples = round.rows as f64 * f64::from(round.repeats);
        // The board's pace was checked at connect (finite, bounded); a
        // product that still overflows a duration waits as long as any.
        let measuring = Duration::try_from_secs_f64(1.5 * samples * plan.seconds_per_sample)
            .unwrap_or(Duration::MAX);
        let timeout = link.options().timeout.saturating_add(measuring);
        let acq = match link
            .call_within(
                &Message::Acquire {
                    repeats: round.repeats,
                },
                timeout,
            )
            .await
        {
            Ok(Message::Result(a)) => a,
            Ok(other) => {
                return Err(Failure::Protocol(format!(
                    "Acquire answered {:#04x}",
                    other.kind()
                )));
            }
            Err(e) => return Err(Failure::from_link("Acquire", e)),
        };
        check(plan, &round, &acq)?;
        let reps = round.repeats as usize;
        let sizes = |field: &str| {
            Failure::Protocol(format!("Result: {field} does not fit the rows it answers"))
        };
        let y = Array3::from_shape_vec((reps, round.rows, plan.n_out), acq.y)
            .map_err(|_| sizes("y"))?;
        let mut dst = all.slice_axis_mut(
            Axis(0),
            Slice::from(round.first_repeat..round.first_repeat + reps),
        );
        dst.slice_axis_inplace(Axis(1), Slice::from(rows.clone()));
        dst.assign(&y);
        let ax = Array2::from_shape_vec((round.rows, plan.n_in), acq.applied_x)
            .map_err(|_| sizes("applied_x"))?;
        // One θ row back for one sent, one per row for one per row: a
        // board answering the other shape answered some other drive.
        let theta_rows = if shared { 1 } else { round.rows };
        let at = Array2::from_shape_vec((theta_rows, plan.n_par), acq.applied_theta)
            .map_err(|_| sizes("applied_theta"))?;
        // The board plays what it was sent: anything else is a reply to
        // some other drive, and must never become a measurement.
        let sent_theta = if shared {
            theta.view()
        } else {
            theta.slice_axis(Axis(0), Slice::from(rows.clone()))
        };
        agree(
            "applied_x",
            &ax,
            &x.slice_axis(Axis(0), Slice::from(rows.clone())),
            plan.grid.input_tolerance(),
        )?;
        agree(
            "applied_theta",
            &at,
            &sent_theta,
            plan.grid.param_tolerance(),
        )?;
        if round.first_repeat == 0 {
            applied_x
                .slice_axis_mut(Axis(0), Slice::from(rows.clone()))
                .assign(&ax);
            if shared {
                applied_theta.assign(&at);
            } else {
                applied_theta
                    .slice_axis_mut(Axis(0), Slice::from(rows.clone()))
                    .assign(&at);
            }
            for (k, i) in rows.clone().enumerate() {
                t_start[i] = acq.started_s[k];
            }
        }
        for (k, i) in rows.clone().enumerate() {
            saturated[i] |= acq.saturated[k];
            if round.first_repeat + reps == r {
                t_end[i] = acq.finished_s[k];
            }
        }
    }
    let (y, y_std) = reduce_repeats(&all);
    Ok(Measurement {
        y,
        y_repeats: batch.return_repeats().then_some(all),
        y_std,
        applied_x,
        applied_theta,
        flags: batch
            .clamped()
            .iter()
            .zip(saturated)
            .map(|(&clamped, saturated)| SampleFlags { saturated, clamped })
            .collect(),
        t_start,
        t_end,
        wall_start,
        wall_end: SystemTime::now(),
        calibration_id: String::new(),
        device_id: String::new(),
    })
}

/// Every size in a Result must be the one asked for.
fn check(plan: &Plan, round: &Round, a: &Acquisition) -> Result<(), Failure> {
    let rows = round.rows;
    let theta_len = a.applied_theta.len();
    let sizes_ok = a.rows as usize == rows
        && a.repeats == round.repeats
        && a.y.len() == round.repeats as usize * rows * plan.n_out
        && a.applied_x.len() == rows * plan.n_in
        && (theta_len == plan.n_par || theta_len == rows * plan.n_par)
        && a.saturated.len() == rows
        && a.started_s.len() == rows
        && a.finished_s.len() == rows;
    if !sizes_ok {
        return Err(Failure::Protocol(format!(
            "Result for {rows} rows × {} repeats has sizes y {}, applied_x {}, applied_theta {}, \
             flags {}, times {}/{}",
            round.repeats,
            a.y.len(),
            a.applied_x.len(),
            theta_len,
            a.saturated.len(),
            a.started_s.len(),
            a.finished_s.len()
        )));
    }
    if a.y.iter().any(|v| !v.is_finite()) {
        return Err(Failure::Protocol("Result carries a non-finite y".into()));
    }
    Ok(())
}

fn agree(
    field: &str,
    applied: &Array2<f32>,
    sent: &ndarray::ArrayView2<'_, f32>,
    tolerance: f32,
) -> Result<(), Failure> {
    if applied.dim() != sent.dim() {
        return Err(Failure::Protocol(format!(
            "{field}: board reports {:?} values for {:?} sent",
            applied.dim(),
            sent.dim()
        )));
    }
    let worst = applied
        .iter()
        .zip(sent.iter())
        .map(|(a, s)| (a - s).abs())
        .fold(0.0f32, f32::max);
    if worst.is_nan() || worst > tolerance {
        return Err(Failure::Protocol(format!(
            "{field}: board applied values up to {worst} away from those sent (tolerance \
             {tolerance})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
