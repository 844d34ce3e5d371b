use std::io;
use std::sync::Arc;
use std::time::Duration;

use hilt_core::{Batch, Device, validate};
use hilt_physics::shg::{ShgConfig, ShgModel};
use hilt_physics::{RigKind, Variant};
use hilt_wire::Message;
use ndarray::Array2;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::emulator::{Board, BoardLimits, Misbehaviour, serve_stream};
use crate::serial::test_settings as settings;
use crate::serial::{Connector, LinkState, SerialDevice, SerialSettings};
use hilt_core::DeviceState::{self, *};

/// Ports handed out one per `open`, as a test plugs them in; with none
/// plugged in, `open` fails like a missing device node.
struct Pipes(mpsc::UnboundedReceiver<DuplexStream>);

impl Connector for Pipes {
    type Port = DuplexStream;

    async fn open(&mut self) -> io::Result<DuplexStream> {
        self.0
            .try_recv()
            .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "no such device"))
    }

    fn describe(&self) -> String {
        "/dev/hilt-test".into()
    }
}

fn shg() -> ShgModel {
    ShgModel::new(ShgConfig::default(), Variant::True, 5).unwrap()
}

/// An SHG board measuring what `shg()` does.
fn board(misbehaviour: Misbehaviour) -> Board {
    Board::with(
        RigKind::Shg,
        5,
        Variant::True,
        BoardLimits::default(),
        misbehaviour,
    )
    .unwrap()
}

struct Rig {
    dev: SerialDevice,
    plug: mpsc::UnboundedSender<DuplexStream>,
    events: mpsc::UnboundedReceiver<LinkState>,
}

impl Rig {
    fn new(configure: bool) -> Rig {
        let (plug, pipes) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::unbounded_channel();
        let mut serial = SerialSettings::new("/dev/hilt-test");
        serial.link.timeout = Duration::from_millis(50);
        if configure {
            serial.configure = vec![("ripple_rad".into(), "0.1".into())];
        }
        let dev = SerialDevice::new(
            &shg(),
            settings(4096, 64),
            serial,
            Pipes(pipes),
            Arc::new(move |s: &LinkState| {
                let _ = tx.send(s.clone());
            }),
        )
        .unwrap();
        Rig { dev, plug, events }
    }

    /// Plugs in a board; returns its task (abort it to unplug).
    fn plug_in(&self, misbehaviour: Misbehaviour) -> tokio::task::JoinHandle<()> {
        let (near, far) = tokio::io::duplex(1 << 20);
        self.plug.send(near).unwrap();
        tokio::spawn(serve_stream(board(misbehaviour), far))
    }

    /// Every state up to and including the first `want`.
    async fn until(&mut self, want: DeviceState) -> Vec<LinkState> {
        let mut seen = Vec::new();
        while let Some(s) = self.events.recv().await {
            let done = s.state == want;
            seen.push(s);
            if done {
                return seen;
            }
        }
        panic!("driver ended before {want:?}: {seen:?}")
    }

    async fn measure(&mut self) -> Result<hilt_core::Measurement, hilt_core::Error> {
        let b = Batch::shared(Array2::from_elem((3, 12), 0.5), &[0.25; 40]);
        let v = validate(self.dev.spec(), b).unwrap();
        self.dev.execute(v).await
    }
}

fn states(seen: &[LinkState]) -> Vec<DeviceState> {
    seen.iter().map(|s| s.state).collect()
}

#[tokio::test(start_paused = true)]
async fn connects_configures_and_measures() {
    let mut rig = Rig::new(true);
    let _board = rig.plug_in(Misbehaviour::default());
    let seen = rig.until(Ready).await;
    let ready = seen.last().unwrap();
    let b = board(Misbehaviour::default());
    let serial = b.identity().serial;
    // Configured: the hash of the configuration the board now runs.
    let mut configured = b;
    let Message::Configured { config_hash } = configured
        .handle(Message::Configure(vec![(
            "ripple_rad".into(),
            "0.1".into(),
        )]))
        .await
    else {
        panic!("the emulated board takes the configuration")
    };
    assert_eq!(
        ready.calibration_id,
        format!("serial-shg-{serial}-{config_hash:016x}")
    );
    assert!(ready.detail.contains(&serial) && ready.detail.contains("/dev/hilt-test"));
    assert_eq!(ready.firmware.serial_number, serial);
    let m = rig.measure().await.unwrap();
    assert_eq!(m.y.dim(), (3, rig.dev.spec().n_out));
    assert_eq!(m.calibration_id, ready.calibration_id);
    assert_eq!(states(&rig.until(Ready).await), [Busy, Ready]);
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_board_is_reconnected_and_reconfigured() {
    let mut rig = Rig::new(false);
    let board = rig.plug_in(Misbehaviour::default());
    rig.until(Ready).await;
    board.abort();
    let seen = rig.until(Reconnecting).await;
    assert_eq!(states(&seen), [Faulted, Reconnecting]);
    assert!(seen[0].detail.contains("port"), "{:?}", seen[0]);
    // Meanwhile batches fail fast, with a reason.
    let err = rig.measure().await.unwrap_err();
    assert!(
        matches!(&err, hilt_core::Error::Unavailable(d) if d.contains("Reconnecting")),
        "{err}"
    );
    // Nothing plugged in yet: attempts fail and back off.
    let seen = rig.until(Reconnecting).await;
    assert!(
        seen[0].detail.contains("cannot open /dev/hilt-test"),
        "{seen:?}"
    );
    let _board = rig.plug_in(Misbehaviour::default());
    rig.until(Ready).await;
    rig.measure().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_board_of_another_rig_is_refused_with_its_name() {
    let mut rig = Rig::new(false);
    let _board = rig.plug_in(Misbehaviour {
        claimed_rig: Some(RigKind::Plate),
        ..Misbehaviour::default()
    });
    let seen = rig.until(Faulted).await;
    let why = &seen.last().unwrap().detail;
    assert!(
        why.contains("is a 'plate' board") && why.contains("configured as 'shg'"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_batches_queue_behind_busy_instead_of_being_refused() {
    // The driver sets Ready just after answering, so the next batch often
    // arrives while it still says Busy: that batch must wait, not fail.
    let mut rig = Rig::new(false);
    let _board = rig.plug_in(Misbehaviour::default());
    rig.until(Ready).await;
    for k in 0..200 {
        rig.measure()
            .await
            .unwrap_or_else(|e| panic!("batch {k}: {e}"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_board_claiming_an_endless_pace_is_refused_with_it() {
    for pace in [f64::INFINITY, f64::NAN, 1e30] {
        let mut rig = Rig::new(false);
        let _board = rig.plug_in(Misbehaviour {
            claimed_seconds_per_sample: Some(pace),
            ..Misbehaviour::default()
        });
        let seen = rig.until(Faulted).await;
        let why = &seen.last().unwrap().detail;
        assert!(why.contains("a sample takes"), "{pace}: {why}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_board_that_never_answers_is_never_ready() {
    let mut rig = Rig::new(false);
    let (near, _far) = tokio::io::duplex(1 << 16);
    rig.plug.send(near).unwrap();
    let seen = rig.until(Faulted).await;
    assert!(seen.last().unwrap().detail.contains("no reply"), "{seen:?}");
    let err = rig.measure().await.unwrap_err();
    assert!(matches!(err, hilt_core::Error::Unavailable(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_halt_sends_the_board_to_its_safe_state_and_the_link_stays_up() {
    let mut rig = Rig::new(false);
    let _board = rig.plug_in(Misbehaviour::default());
    rig.until(Ready).await;
    rig.measure().await.unwrap();
    rig.dev.make_safe().await.unwrap();
    // Still connected: the next batch loads its drive and measures.
    rig.measure().await.unwrap();
    assert_eq!(rig.dev.state().state, Ready);
}
