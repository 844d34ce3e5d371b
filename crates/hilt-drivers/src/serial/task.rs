//! The task that owns a board's port: connecting → ready ⇄ busy, and on a
//! loss faulted → reconnecting with backoff, by itself, for as long as the
//! device exists.

use hilt_core::{
    DeviceSpec, DeviceState, Error as CoreError, FirmwareIdentity, Measurement, ValidBatch,
};
use hilt_wire::{Identity, Message, VERSIONS};
use tokio::sync::{mpsc, oneshot, watch};

use super::measure::{Failure, Plan, measure};
use super::port::Connector;
use super::settings::SerialSettings;
use super::state::{LinkState, StateObserver};
use super::{Link, LinkCounters, LinkError};
use crate::grid::Grid;
use std::sync::Arc;

/// Work for the board, and where its answer goes.
#[derive(Debug)]
pub(crate) enum Job {
    /// One batch.
    Measure {
        batch: ValidBatch,
        reply: oneshot::Sender<Result<Measurement, CoreError>>,
    },
    /// Put the actuators in their safe state (the daemon was halted).
    Safe {
        reply: oneshot::Sender<Result<(), CoreError>>,
    },
}

/// Failed measurements in a row after which the link is presumed broken
/// and rebuilt (a board that keeps losing replies is not healthy, even if
/// the port is still open).
const FAULTS_BEFORE_RECONNECT: u32 = 3;

/// The slowest pace a board may claim: a minute per sample is slower than
/// any rig hilt drives (the plate, slowest, takes 36 ms).
const MAX_SECONDS_PER_SAMPLE: f64 = 60.0;

/// Why a connection ended.
enum Ended {
    /// The device was dropped.
    Shutdown,
    /// The link failed; reconnect.
    Lost(String),
}

/// Why a connect attempt failed; `mismatch` = the board answered but is
/// not the one configured (retrying fast will not help).
struct ConnectError {
    detail: String,
    mismatch: bool,
}

impl ConnectError {
    fn link(step: &str, e: LinkError) -> Self {
        ConnectError {
            detail: format!("{step}: {e}"),
            mismatch: false,
        }
    }

    fn mismatch(detail: String) -> Self {
        ConnectError {
            detail,
            mismatch: true,
        }
    }
}

pub(crate) struct Session<C> {
    spec: DeviceSpec,
    settings: SerialSettings,
    connector: C,
    state: watch::Sender<LinkState>,
    observer: StateObserver,
    nonce: u32,
    counters: Arc<LinkCounters>,
}

impl<C: Connector> Session<C> {
    pub fn new(
        spec: DeviceSpec,
        settings: SerialSettings,
        connector: C,
        state: watch::Sender<LinkState>,
        observer: StateObserver,
        counters: Arc<LinkCounters>,
    ) -> Self {
        Session {
            spec,
            settings,
            connector,
            state,
            observer,
            nonce: 0,
            counters,
        }
    }

    /// A new state and detail; with `board`, also who now measures (its
    /// calibration id and identity), which stays until another board
    /// answers.
    fn set(&self, state: DeviceState, detail: String, board: Option<(&str, FirmwareIdentity)>) {
        let mut next = self.state.borrow().clone();
        next.state = state;
        next.detail = detail;
        if let Some((calibration_id, firmware)) = board {
            next.calibration_id = calibration_id.to_string();
            next.firmware = firmware;
        }
        // (The borrow above has ended: send_replace takes the write lock.)
        if *self.state.borrow() != next {
            // Two lines a batch at INFO would drown the rest.
            if matches!(next.state, DeviceState::Busy | DeviceState::Ready)
                && matches!(
                    self.state.borrow().state,
                    DeviceState::Busy | DeviceState::Ready
                )
            {
                tracing::debug!(device = %self.spec.id, state = ?next.state);
            } else {
                tracing::info!(device = %self.spec.id, state = ?next.state, detail = %next.detail);
            }
            (self.observer)(&next);
            self.state.send_replace(next);
        }
    }

    /// A new state, same detail (the connected board's identity).
    fn set_state(&self, state: DeviceState) {
        let detail = self.state.borrow().detail.clone();
        self.set(state, detail, None);
    }

    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let min = self.settings.reconnect_min;
        let max = self.settings.reconnect_max;
        let mut delay = min;
        loop {
            let ended = match self.connect().await {
                Ok((link, plan, calibration_id)) => {
                    delay = min;
                    self.serve(link, &plan, &calibration_id, &mut jobs).await
                }
                Err(e) => {
                    if e.mismatch {
                        delay = max;
                    }
                    Ended::Lost(e.detail)
                }
            };
            let Ended::Lost(why) = ended else { return };
            self.counters
                .reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.set(DeviceState::Faulted, why.clone(), None);
            self.set(
                DeviceState::Reconnecting,
                format!("{why}; reconnecting in {delay:?}"),
                None,
            );
            // Batches arriving meanwhile are answered at once.
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    job = jobs.recv() => {
                        let gone = || CoreError::Unavailable(format!(
                            "{}: reconnecting: {why}", self.spec.id
                        ));
                        match job {
                            None => return,
                            Some(Job::Measure { reply, .. }) => {
                                let _ = reply.send(Err(gone()));
                            }
                            Some(Job::Safe { reply }) => {
                                let _ = reply.send(Err(gone()));
                            }
                        }
                    }
                }
            }
            delay = (delay * 2).min(max);
        }
    }

    /// Open, identify, configure, and check the board is the one the spec
    /// describes, with the version both sides speak.
    async fn connect(&mut self) -> Result<(Link<C::Port>, Plan, String), ConnectError> {
        let port = self.connector.describe();
        let port_io = self.connector.open().await.map_err(|e| ConnectError {
            detail: format!("cannot open {port}: {e}"),
            mismatch: false,
        })?;
        let mut link = Link::counted(port_io, self.settings.link, Arc::clone(&self.counters));
        link.resync()
            .await
            .map_err(|e| ConnectError::link("resync", e))?;
        let first = self.identify(&mut link).await?;
        if first.capabilities.rig != self.spec.kind {
            return Err(ConnectError::mismatch(format!(
                "{port} is a '{}' board ({} {}), configured as '{}'",
                first.capabilities.rig, first.model, first.serial, self.spec.kind
            )));
        }
        let mut config_hash = None;
        if !self.settings.configure.is_empty() {
            match link
                .call(&Message::Configure(self.settings.configure.clone()))
                .await
            {
                Ok(Message::Configured { config_hash: h }) => config_hash = Some(h),
                Ok(other) => {
                    return Err(ConnectError::mismatch(format!(
                        "Configure answered {:#04x}",
                        other.kind()
                    )));
                }
                Err(LinkError::Refused { refusal, .. }) => {
                    return Err(ConnectError::mismatch(format!(
                        "board refused the configuration ({:?}): {}",
                        refusal.code, refusal.detail
                    )));
                }
                Err(e) => return Err(ConnectError::link("Configure", e)),
            }
        }
        // Sizes may depend on the configuration just applied.
        let board = self.identify(&mut link).await?;
        self.verify(&board)?;
        let calibration_id = format!(
            "serial-{}-{}-{:016x}",
            self.spec.kind,
            board.serial,
            config_hash.unwrap_or(0)
        );
        self.set(
            DeviceState::Ready,
            format!(
                "{} {} firmware {} on {port}",
                board.model, board.serial, board.firmware
            ),
            Some((
                &calibration_id,
                FirmwareIdentity {
                    model: board.model.clone(),
                    serial_number: board.serial.clone(),
                    version: board.firmware.clone(),
                },
            )),
        );
        let plan = Plan::new(Grid::of(&self.spec), &board.capabilities);
        Ok((link, plan, calibration_id))
    }

    async fn identify(&self, link: &mut Link<C::Port>) -> Result<Identity, ConnectError> {
        match link.call(&Message::Identify(VERSIONS)).await {
            Ok(Message::Identity(id)) => {
                if id.protocol.negotiate(VERSIONS).is_none() {
                    return Err(ConnectError::mismatch(format!(
                        "no common protocol version: host speaks {}..={}, board {}..={}",
                        VERSIONS.min, VERSIONS.max, id.protocol.min, id.protocol.max
                    )));
                }
                Ok(id)
            }
            Ok(other) => Err(ConnectError::mismatch(format!(
                "Identify answered {:#04x}",
                other.kind()
            ))),
            Err(LinkError::Refused { refusal, .. }) => Err(ConnectError::mismatch(format!(
                "board refused Identify ({:?}): {}",
                refusal.code, refusal.detail
            ))),
            Err(e) => Err(ConnectError::link("Identify", e)),
        }
    }

    /// The board must measure what the spec promises clients: same sizes,
    /// and every value the host's limits allow must be playable.
    fn verify(&self, board: &Identity) -> Result<(), ConnectError> {
        let c = &board.capabilities;
        let s = &self.spec;
        let sizes = (c.n_in as usize, c.n_par as usize, c.n_out as usize);
        if sizes != (s.n_in, s.n_par, s.n_out) {
            return Err(ConnectError::mismatch(format!(
                "board measures n_in/n_par/n_out {}/{}/{}, the configuration says {}/{}/{}",
                sizes.0, sizes.1, sizes.2, s.n_in, s.n_par, s.n_out
            )));
        }
        let covers = |r: [f32; 2], need: hilt_core::Range| r[0] <= need.min && need.max <= r[1];
        if !covers(c.input_range, s.input_range) || !covers(c.param_range, s.param_range) {
            return Err(ConnectError::mismatch(format!(
                "board plays inputs in {:?} and parameters in {:?}, narrower than the limits \
                 [{}, {}] and [{}, {}]",
                c.input_range,
                c.param_range,
                s.input_range.min,
                s.input_range.max,
                s.param_range.min,
                s.param_range.max
            )));
        }
        if c.max_rows == 0 {
            return Err(ConnectError::mismatch("board accepts no rows".into()));
        }
        // The host waits for an Acquire by this pace: a board cannot make
        // it wait forever, or compute a deadline that does not exist.
        if !(c.seconds_per_sample.is_finite()
            && (0.0..=MAX_SECONDS_PER_SAMPLE).contains(&c.seconds_per_sample))
        {
            return Err(ConnectError::mismatch(format!(
                "board says a sample takes {} s: not in 0..={MAX_SECONDS_PER_SAMPLE} s",
                c.seconds_per_sample
            )));
        }
        Ok(())
    }

    /// Send Safe; a board without the message (older firmware) says so
    /// and stays connected.
    async fn make_safe(&self, link: &mut Link<C::Port>) -> Result<(), CoreError> {
        let id = &self.spec.id;
        match link.call(&Message::Safe).await {
            Ok(Message::Safed) => Ok(()),
            Ok(other) => Err(CoreError::Internal(format!(
                "{id}: Safe answered {:#04x}",
                other.kind()
            ))),
            Err(LinkError::Refused { refusal, .. })
                if refusal.code == hilt_wire::ErrorCode::UnknownMessage =>
            {
                Err(CoreError::Unavailable(format!(
                    "{id}: the board's firmware has no safe-state command: {}",
                    refusal.detail
                )))
            }
            Err(e) => Err(CoreError::Unavailable(format!("{id}: Safe: {e}"))),
        }
    }

    /// Ready until the link fails: batches, heartbeats when idle, and an
    /// eye on the port so an unplug is seen at once, not at the next batch.
    async fn serve(
        &mut self,
        mut link: Link<C::Port>,
        plan: &Plan,
        calibration_id: &str,
        jobs: &mut mpsc::Receiver<Job>,
    ) -> Ended {
        let mut failures = 0;
        let beat = tokio::time::sleep(self.settings.heartbeat);
        tokio::pin!(beat);
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let (batch, reply) = match job {
                        None => return Ended::Shutdown,
                        Some(Job::Safe { reply }) => {
                            let r = self.make_safe(&mut link).await;
                            beat.as_mut().reset(tokio::time::Instant::now() + self.settings.heartbeat);
                            let _ = reply.send(r);
                            continue;
                        }
                        Some(Job::Measure { batch, reply }) => (batch, reply),
                    };
                    if reply.is_closed() {
                        continue;
                    }
                    self.set_state(DeviceState::Busy);
                    let result = measure(&mut link, plan, &batch).await;
                    beat.as_mut().reset(tokio::time::Instant::now() + self.settings.heartbeat);
                    match result {
                        Ok(mut m) => {
                            failures = 0;
                            m.calibration_id = calibration_id.to_string();
                            let _ = reply.send(Ok(m));
                        }
                        Err(f) => {
                            let id = &self.spec.id;
                            let _ = reply.send(Err(match &f {
                                Failure::Lost(_) | Failure::Retry(_) => {
                                    CoreError::Unavailable(format!("{id}: {f}"))
                                }
                                Failure::Hardware(_) => CoreError::Aborted(format!("{id}: {f}")),
                                Failure::Protocol(_) => CoreError::Internal(format!(
                                    "{id}: board protocol violation: {f}"
                                )),
                            }));
                            failures += 1;
                            if let Failure::Lost(why) = f {
                                return Ended::Lost(why);
                            }
                            if failures >= FAULTS_BEFORE_RECONNECT {
                                return Ended::Lost(format!(
                                    "{failures} batches in a row failed, the last: {f}"
                                ));
                            }
                        }
                    }
                    self.set_state(DeviceState::Ready);
                }
                () = &mut beat => {
                    self.nonce = self.nonce.wrapping_add(1);
                    let nonce = self.nonce;
                    match link.call(&Message::Heartbeat { nonce }).await {
                        Ok(Message::Alive { nonce: n, .. }) if n == nonce => {}
                        Ok(other) => {
                            return Ended::Lost(format!("heartbeat {nonce} answered {other:?}"));
                        }
                        Err(e) => return Ended::Lost(format!("heartbeat: {e}")),
                    }
                    beat.as_mut().reset(tokio::time::Instant::now() + self.settings.heartbeat);
                }
                e = link.idle() => return Ended::Lost(format!("port: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
