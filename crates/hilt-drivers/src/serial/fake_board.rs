//! An in-memory board for the driver's unit tests: what a board does with
//! each request, measuring a physics model with the simulator's own loop,
//! on the far end of a duplex pipe. (firmware-sim is the full emulation,
//! on a real pseudo-terminal; it is exercised by the tests in `tests/`.)

use futures::{SinkExt, StreamExt};
use hilt_core::{Backend, Batch, DeviceSpec, LimitPolicy, validate};
use hilt_physics::PhysicalModel;
use hilt_wire::{
    Acquisition, Capabilities, ErrorCode, Frame, Identity, Message, Refusal, VERSIONS, WireCodec,
};
use ndarray::Array2;
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::sim::run::{Grid, run};
use crate::spec::{DeviceSettings, build_spec};

/// How the fake misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quirks {
    /// Report applied inputs shifted by this much (a reply to some other
    /// drive, as far as the host can tell).
    pub applied_offset: f32,
    /// Claim to be this rig instead of the model's.
    pub rig: Option<&'static str>,
}

pub(crate) fn settings(max_rows: usize, max_repeats: u32) -> DeviceSettings {
    DeviceSettings {
        id: "fake".into(),
        seed: 0,
        input_limits: None,
        param_limits: None,
        policy: LimitPolicy::Clamp,
        max_batch: max_rows,
        max_repeats,
        emulate_seconds_per_sample: None,
    }
}

struct Fake<M> {
    model: M,
    spec: DeviceSpec,
    loaded: Option<(Array2<f32>, Array2<f32>)>,
    quirks: Quirks,
}

impl<M: PhysicalModel> Fake<M> {
    fn identity(&self) -> Identity {
        let s = &self.spec;
        Identity {
            model: "fake-board".into(),
            serial: "FAKE-1".into(),
            firmware: "0.0".into(),
            protocol: VERSIONS,
            capabilities: Capabilities {
                rig: self.quirks.rig.unwrap_or(&s.kind).to_string(),
                n_in: s.n_in as u32,
                n_par: s.n_par as u32,
                n_out: s.n_out as u32,
                max_rows: s.max_batch as u32,
                max_repeats: s.max_repeats,
                input_range: [s.input_range.min, s.input_range.max],
                param_range: [s.param_range.min, s.param_range.max],
                seconds_per_sample: s.seconds_per_sample,
            },
        }
    }

    fn handle(&mut self, request: Message) -> Message {
        let refuse = |code, detail: &str| Message::Error(Refusal::new(code, detail));
        match request {
            Message::Identify(_) => Message::Identity(self.identity()),
            Message::Configure(_) => Message::Configured { config_hash: 7 },
            Message::Heartbeat { nonce } => Message::Alive {
                nonce,
                uptime_ms: 0,
            },
            Message::LoadDrive(d) => {
                let rows = d.rows as usize;
                let theta_rows = if d.theta.len() == self.spec.n_par {
                    1
                } else {
                    rows
                };
                let x = Array2::from_shape_vec((rows, self.spec.n_in), d.x);
                let t = Array2::from_shape_vec((theta_rows, self.spec.n_par), d.theta);
                match (x, t) {
                    (Ok(x), Ok(t)) if rows <= self.spec.max_batch => {
                        self.loaded = Some((x, t));
                        Message::Loaded { rows: d.rows }
                    }
                    _ => refuse(ErrorCode::BadPayload, "sizes"),
                }
            }
            Message::Acquire { repeats } => {
                let Some((x, theta)) = self.loaded.clone() else {
                    return refuse(ErrorCode::NotReady, "no drive");
                };
                let batch = Batch {
                    x,
                    theta,
                    repeats,
                    return_repeats: true,
                };
                let valid = match validate(&self.spec, batch) {
                    Ok(v) => v,
                    Err(e) => return refuse(ErrorCode::OutOfRange, &e.to_string()),
                };
                let m = run(&mut self.model, Grid::of(&self.spec), &valid);
                Message::Result(Acquisition {
                    rows: m.y.nrows() as u32,
                    repeats,
                    y: m.y_repeats.expect("asked for").into_iter().collect(),
                    applied_x: m
                        .applied_x
                        .iter()
                        .map(|v| v + self.quirks.applied_offset)
                        .collect(),
                    applied_theta: m.applied_theta.into_iter().collect(),
                    saturated: m.flags.iter().map(|f| f.saturated).collect(),
                    started_s: m.t_start,
                    finished_s: m.t_end,
                })
            }
            other => refuse(ErrorCode::UnknownMessage, &format!("{:#04x}", other.kind())),
        }
    }
}

/// A board measuring `model` on `io` until the host hangs up.
pub(crate) fn spawn<M: PhysicalModel>(
    io: DuplexStream,
    model: M,
    s: &DeviceSettings,
    quirks: Quirks,
) -> JoinHandle<()> {
    let spec = build_spec(&model, s, Backend::Sim).expect("test settings are valid");
    let mut fake = Fake {
        model,
        spec,
        loaded: None,
        quirks,
    };
    tokio::spawn(async move {
        let mut io = Framed::new(io, WireCodec::new());
        while let Some(Ok(item)) = io.next().await {
            let Ok(frame) = item else { continue };
            let reply = fake.handle(frame.message);
            if io.send(Frame::new(frame.seq, reply)).await.is_err() {
                return;
            }
        }
    })
}
