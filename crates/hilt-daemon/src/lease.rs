//! Device leases: one holder at a time, FIFO waiters, a TTL refreshed by
//! every use and keepalive. A holder that vanishes (crash, cable) frees the
//! device after its TTL; a batch in flight keeps its lease alive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::status::{EventKind, StatusHub};

/// Ended leases remembered so a late client hears why its lease is gone.
const REMEMBER_ENDED: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    pub id: String,
    pub device_id: String,
    pub ttl: Duration,
    pub expires: SystemTime,
}

#[derive(Debug)]
struct Holder {
    id: String,
    /// The token that acquired it, for the audit trail.
    name: Arc<str>,
    ttl: Duration,
    expires: Instant,
    in_use: u32,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    ttl: Duration,
    name: Arc<str>,
    tx: oneshot::Sender<Grant>,
}

#[derive(Debug, Default)]
struct State {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
    ended: VecDeque<(String, String)>,
    /// The expiry task waits for a change with no deadline (it last saw
    /// the holder in use). Only then does a batch's end need to wake it:
    /// otherwise it wakes at the deadline it has and finds the later one.
    expiry_parked: bool,
}

#[derive(Debug)]
pub struct Leases {
    device_id: String,
    state: Mutex<State>,
    changed: Notify,
    status: Arc<StatusHub>,
    /// Waiters in line before the next gets `RESOURCE_EXHAUSTED`: each
    /// holds a request task and its connection.
    max_waiters: usize,
}

/// A lease handed to a waiter. If the waiter is gone before it reads it
/// (cancelled exactly then), dropping the grant releases the lease, so the
/// device never sits idle behind a holder that does not exist.
#[derive(Debug)]
struct Grant {
    info: LeaseInfo,
    leases: Arc<Leases>,
    claimed: bool,
}

impl Drop for Grant {
    fn drop(&mut self) {
        if !self.claimed {
            let _ = self.leases.release(&self.info.id);
        }
    }
}

/// Removes a waiter that stops waiting (timeout, cancelled call).
struct WaitGuard<'a> {
    leases: &'a Arc<Leases>,
    waiter: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.leases.lock();
        let before = st.waiters.len();
        st.waiters.retain(|w| w.id != self.waiter);
        if st.waiters.len() != before {
            self.leases.publish(&st);
        }
    }
}

/// Held while a batch of this lease is queued or measuring.
#[derive(Debug)]
pub struct InUse {
    leases: Arc<Leases>,
    id: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut st = self.leases.lock();
        let mut wake = false;
        if let Some(h) = st.holder.as_mut().filter(|h| h.id == self.id) {
            h.in_use -= 1;
            h.expires = Instant::now() + h.ttl;
            wake = h.in_use == 0;
        }
        wake &= st.expiry_parked;
        drop(st);
        // Not at every batch: a wake-up per batch cost a busy device's
        // callers a task switch each.
        if wake {
            self.leases.changed.notify_one();
        }
    }
}

impl Leases {
    pub fn new(device_id: String, status: Arc<StatusHub>, max_waiters: usize) -> Arc<Self> {
        Arc::new(Leases {
            device_id,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            status,
            max_waiters,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        let leased = st.holder.is_some();
        let waiters = u32::try_from(st.waiters.len()).unwrap_or(u32::MAX);
        self.status.update(EventKind::LeaseChanged, |s| {
            s.leased = leased;
            s.waiters = waiters;
        });
    }

    fn info(&self, h: &Holder) -> LeaseInfo {
        let left = h.expires.saturating_duration_since(Instant::now());
        LeaseInfo {
            id: h.id.clone(),
            device_id: self.device_id.clone(),
            ttl: h.ttl,
            expires: SystemTime::now() + left,
        }
    }

    fn make_holder(ttl: Duration, name: Arc<str>) -> Holder {
        Holder {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name,
            ttl,
            expires: Instant::now() + ttl,
            in_use: 0,
        }
    }

    fn end(st: &mut State, id: String, why: impl Into<String>) {
        st.ended.push_back((id, why.into()));
        if st.ended.len() > REMEMBER_ENDED {
            st.ended.pop_front();
        }
    }

    /// Hand the device to the first waiter still waiting.
    fn grant_next(self: &Arc<Self>, st: &mut State) {
        while let Some(w) = st.waiters.pop_front() {
            let h = Leases::make_holder(w.ttl, w.name);
            let info = self.info(&h);
            st.holder = Some(h);
            let grant = Grant {
                info,
                leases: Arc::clone(self),
                claimed: false,
            };
            match w.tx.send(grant) {
                Ok(()) => return,
                Err(mut g) => {
                    // Waiter gone; defuse (we hold the lock) and try the next.
                    g.claimed = true;
                    st.holder = None;
                }
            }
        }
    }

    /// Wait in line for the device; `name` is the caller's token name.
    pub async fn acquire(
        self: &Arc<Self>,
        ttl: Duration,
        wait: Option<Duration>,
        name: Arc<str>,
    ) -> Result<LeaseInfo, Error> {
        let (rx, waiter) = {
            let mut st = self.lock();
            self.expire_if_due(&mut st);
            if st.holder.is_none() && st.waiters.is_empty() {
                let h = Leases::make_holder(ttl, name);
                let info = self.info(&h);
                st.holder = Some(h);
                self.publish(&st);
                drop(st);
                self.changed.notify_one();
                return Ok(info);
            }
            if st.waiters.len() >= self.max_waiters {
                return Err(Error::Exhausted(format!(
                    "device '{}' already has {} clients waiting for its lease (the server's \
                     max_waiters); try again later",
                    self.device_id,
                    st.waiters.len()
                )));
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_waiter;
            st.next_waiter += 1;
            st.waiters.push_back(Waiter { id, ttl, name, tx });
            self.publish(&st);
            (rx, id)
        };
        let _guard = WaitGuard {
            leases: self,
            waiter,
        };
        let got = match wait {
            Some(d) => tokio::time::timeout(d, rx)
                .await
                .map_err(|_| Error::LeaseWait(d.as_secs_f64()))?,
            None => rx.await,
        };
        let mut grant = got.map_err(|_| Error::ShuttingDown)?;
        grant.claimed = true;
        self.changed.notify_one();
        Ok(grant.info.clone())
    }

    fn not_held(&self, st: &State, id: &str) -> Error {
        if id.is_empty() {
            return Error::Lease(format!(
                "missing: acquire a lease of device '{}' first (AcquireLease)",
                self.device_id
            ));
        }
        match st.ended.iter().rev().find(|(e, _)| e == id) {
            Some((_, why)) => Error::Lease(format!(
                "lease '{id}' of device '{}' {why}; acquire a new one",
                self.device_id
            )),
            None => Error::Lease(format!(
                "'{}' is not a lease of device '{}'",
                crate::error::quote(id),
                self.device_id
            )),
        }
    }

    /// Whether `id` is, or was recently, a lease of this device.
    pub fn knows(&self, id: &str) -> bool {
        let st = self.lock();
        st.holder.as_ref().is_some_and(|h| h.id == id) || st.ended.iter().any(|(e, _)| e == id)
    }

    /// Mark the lease in use for one batch; refreshes its TTL when done.
    pub fn begin_use(self: &Arc<Self>, id: &str) -> Result<InUse, Error> {
        let mut st = self.lock();
        self.expire_if_due(&mut st);
        match st.holder.as_mut().filter(|h| h.id == id) {
            Some(h) => {
                h.in_use += 1;
                Ok(InUse {
                    leases: Arc::clone(self),
                    id: id.to_string(),
                })
            }
            None => Err(self.not_held(&st, id)),
        }
    }

    pub fn keep_alive(self: &Arc<Self>, id: &str) -> Result<LeaseInfo, Error> {
        let mut st = self.lock();
        self.expire_if_due(&mut st);
        match st.holder.as_mut().filter(|h| h.id == id) {
            Some(h) => {
                h.expires = Instant::now() + h.ttl;
                let info = self.info(h);
                drop(st);
                self.changed.notify_one();
                Ok(info)
            }
            None => Err(self.not_held(&st, id)),
        }
    }

    pub fn release(self: &Arc<Self>, id: &str) -> Result<(), Error> {
        let mut st = self.lock();
        if st.holder.as_ref().is_some_and(|h| h.id == id) {
            st.holder = None;
            Leases::end(&mut st, id.to_string(), "was released");
            self.grant_next(&mut st);
            self.publish(&st);
            drop(st);
            self.changed.notify_one();
            Ok(())
        } else {
            Err(self.not_held(&st, id))
        }
    }

    /// End the holder's lease if its TTL ran out with no batch in flight.
    fn expire_if_due(self: &Arc<Self>, st: &mut State) {
        let now = Instant::now();
        if let Some(h) = st.holder.take_if(|h| h.in_use == 0 && h.expires <= now) {
            tracing::info!(target: "hilt::audit", event = "lease.expired",
                device = %self.device_id, token = %h.name, "lease expired");
            Leases::end(st, h.id, "expired (no use or keepalive within its TTL)");
            self.grant_next(st);
            self.publish(st);
        }
    }

    /// End the holder's lease whoever holds it (an admin's BreakLease):
    /// its batches in flight finish, its next call hears `why`, and the
    /// next waiter gets the device. Returns the holder's name, if any.
    pub fn break_holder(self: &Arc<Self>, why: String) -> Option<Arc<str>> {
        let mut st = self.lock();
        let h = st.holder.take()?;
        Leases::end(&mut st, h.id, why);
        self.grant_next(&mut st);
        self.publish(&st);
        drop(st);
        self.changed.notify_one();
        Some(h.name)
    }

    /// Frees the device when a holder goes silent, without waiting for the
    /// next request to notice.
    pub async fn run_expiry(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let deadline = {
                let mut st = self.lock();
                self.expire_if_due(&mut st);
                let deadline = st
                    .holder
                    .as_ref()
                    .filter(|h| h.in_use == 0)
                    .map(|h| h.expires);
                st.expiry_parked = deadline.is_none();
                deadline
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.changed.notified() => {}
                _ = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
