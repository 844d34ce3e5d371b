//! Prometheus metrics at `http://<metrics_listen>/metrics`. Counters and
//! the latency histogram are updated where the work happens (the actor,
//! the service, the serial link); gauges that mirror state someone else
//! owns (device state, queue, lease, waiters) are read at scrape time, so
//! they can never drift from what `WatchDevice` shows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hilt_core::DeviceState;
use hilt_drivers::serial::LinkCounters;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::daemon::Daemon;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabel {
    device: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    device: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    device: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabel {
    device: String,
    event: String,
}

type F<L, M> = Family<L, M>;
type Seconds = Counter<f64, AtomicU64>;

/// Every metric hiltd exports.
pub struct Metrics {
    registry: Registry,
    batches: F<DeviceLabel, Counter>,
    samples: F<DeviceLabel, Counter>,
    busy: F<DeviceLabel, Seconds>,
    errors: F<CodeLabel, Counter>,
    limit_refused: F<DeviceLabel, Counter>,
    limit_clamped_rows: F<DeviceLabel, Counter>,
    interlock_refused: F<DeviceLabel, Counter>,
    latency: Family<DeviceLabel, Histogram, fn() -> Histogram>,
    state: F<StateLabel, Gauge>,
    halted: Gauge,
    queued: F<DeviceLabel, Gauge>,
    lease_held: F<DeviceLabel, Gauge>,
    waiters: F<DeviceLabel, Gauge>,
    link: F<LinkLabel, Gauge<u64, AtomicU64>>,
    /// The serial devices' link counters, read at scrape time.
    links: Mutex<Vec<(String, Arc<LinkCounters>)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~105 s: a loopback round trip up to a paced full batch.
    Histogram::new(exponential_buckets(50e-6, 2.0, 22))
}

/// One device's counters, cloned out of the families once so the hot path
/// does no label lookups.
#[derive(Debug, Clone)]
pub struct DeviceMetrics {
    id: String,
    batches: Counter,
    samples: Counter,
    busy: Seconds,
    limit_refused: Counter,
    limit_clamped_rows: Counter,
    interlock_refused: Counter,
    latency: Histogram,
    errors: F<CodeLabel, Counter>,
}

impl DeviceMetrics {
    /// A batch measured.
    pub fn measured(&self, samples: u64, seconds: f64) {
        self.batches.inc();
        self.samples.inc_by(samples);
        self.busy.inc_by(seconds);
    }

    /// Time from request to answer of one Execute or streamed batch.
    pub fn answered(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// Count a batch's outcome: its latency from `started` if measured,
    /// its code if not.
    pub fn count<T>(&self, started: std::time::Instant, r: Result<T, Error>) -> Result<T, Error> {
        match &r {
            Ok(_) => self.answered(started.elapsed().as_secs_f64()),
            Err(e) => self.failed(e.code()),
        }
        r
    }

    /// A call about this device ended with `code` (not OK).
    pub fn failed(&self, code: tonic::Code) {
        self.errors
            .get_or_create(&CodeLabel {
                device: self.id.clone(),
                code: code_name(code),
            })
            .inc();
        if code == tonic::Code::OutOfRange {
            self.limit_refused.inc();
        }
    }

    /// Rows of an admitted batch that were clamped under policy `clamp`.
    pub fn clamped(&self, rows: u64) {
        self.limit_clamped_rows.inc_by(rows);
    }

    /// A batch refused by the interlock.
    pub fn interlock_refused(&self) {
        self.interlock_refused.inc();
    }
}

/// `RESOURCE_EXHAUSTED`, as gRPC's documents spell the codes.
fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("hilt"),
            batches: F::default(),
            samples: F::default(),
            busy: F::default(),
            errors: F::default(),
            limit_refused: F::default(),
            limit_clamped_rows: F::default(),
            interlock_refused: F::default(),
            latency: Family::new_with_constructor(latency_histogram),
            state: F::default(),
            halted: Gauge::default(),
            queued: F::default(),
            lease_held: F::default(),
            waiters: F::default(),
            link: F::default(),
            links: Mutex::new(Vec::new()),
        };
        let r = &mut m.registry;
        r.register("batches", "Batches measured", m.batches.clone());
        r.register(
            "samples",
            "Samples measured (rows x repeats)",
            m.samples.clone(),
        );
        r.register(
            "busy_seconds",
            "Seconds the device spent measuring",
            m.busy.clone(),
        );
        r.register(
            "errors",
            "Calls about a device that ended with a gRPC error, by code",
            m.errors.clone(),
        );
        r.register(
            "limit_refused_batches",
            "Batches refused for a value outside the device's limits (policy reject)",
            m.limit_refused.clone(),
        );
        r.register(
            "limit_clamped_rows",
            "Rows with a value clamped to the device's limits (policy clamp)",
            m.limit_clamped_rows.clone(),
        );
        r.register(
            "interlock_refused_batches",
            "Batches refused by the device's interlock (rate or drive-energy budget)",
            m.interlock_refused.clone(),
        );
        r.register(
            "execute_latency_seconds",
            "Time from request to answer of one batch (Execute or Stream)",
            m.latency.clone(),
        );
        r.register(
            "device_state",
            "1 for the state the device is in",
            m.state.clone(),
        );
        r.register(
            "halted",
            "1 while an admin has halted the daemon",
            m.halted.clone(),
        );
        r.register(
            "queue_depth",
            "Batches queued on the device",
            m.queued.clone(),
        );
        r.register(
            "lease_held",
            "1 while someone holds the device's lease",
            m.lease_held.clone(),
        );
        r.register(
            "lease_waiters",
            "Clients waiting for the device's lease",
            m.waiters.clone(),
        );
        r.register(
            "serial_link_events",
            "Serial link events since start (requests, retries, timeouts, corrupt frames, \
             stale replies, reconnects)",
            m.link.clone(),
        );
        m
    }

    /// The counters of device `id`.
    pub fn device(&self, id: &str) -> DeviceMetrics {
        let l = DeviceLabel { device: id.into() };
        DeviceMetrics {
            id: id.into(),
            batches: self.batches.get_or_create(&l).clone(),
            samples: self.samples.get_or_create(&l).clone(),
            busy: self.busy.get_or_create(&l).clone(),
            limit_refused: self.limit_refused.get_or_create(&l).clone(),
            limit_clamped_rows: self.limit_clamped_rows.get_or_create(&l).clone(),
            interlock_refused: self.interlock_refused.get_or_create(&l).clone(),
            latency: self.latency.get_or_create(&l).clone(),
            errors: self.errors.clone(),
        }
    }

    /// Report the link counters of serial device `id`.
    pub fn serial_link(&self, id: &str, counters: Arc<LinkCounters>) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.into(), counters));
    }

    /// The text Prometheus scrapes, with the mirrored gauges read now.
    fn render(&self, daemon: &Daemon) -> String {
        for d in daemon.registry.iter() {
            let id = &d.spec.id;
            let l = DeviceLabel { device: id.clone() };
            let s = d.status.snapshot();
            for state in [
                DeviceState::Connecting,
                DeviceState::Ready,
                DeviceState::Busy,
                DeviceState::Reconnecting,
                DeviceState::Faulted,
            ] {
                let label = StateLabel {
                    device: id.clone(),
                    state: format!("{state:?}").to_lowercase(),
                };
                self.state
                    .get_or_create(&label)
                    .set(i64::from(s.state == state));
            }
            self.queued
                .get_or_create(&l)
                .set(i64::try_from(d.actor.queued()).unwrap_or(i64::MAX));
            self.lease_held.get_or_create(&l).set(i64::from(s.leased));
            self.waiters.get_or_create(&l).set(i64::from(s.waiters));
        }
        self.halted.set(i64::from(daemon.is_halted()));
        for (id, c) in self.links.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let counts = [
                ("requests", &c.requests),
                ("retries", &c.retries),
                ("timeouts", &c.timeouts),
                ("corrupt_frames", &c.corrupt_frames),
                ("stale_replies", &c.stale_replies),
                ("reconnects", &c.reconnects),
            ];
            for (event, v) in counts {
                self.link
                    .get_or_create(&LinkLabel {
                        device: id.clone(),
                        event: event.into(),
                    })
                    .set(v.load(Relaxed));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `/metrics` on `listener` until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    stop: CancellationToken,
) -> Result<(), Error> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let daemon = Arc::clone(&daemon);
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    daemon.metrics.render(&daemon),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_spells_them() {
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::OutOfRange), "OUT_OF_RANGE");
    }
}
