use hilt_core::{Backend, Batch, Device, validate};
use hilt_physics::shg::{ShgConfig, ShgModel};
use hilt_physics::{PhysicalModel, RigKind, Variant};
use ndarray::Array2;

use super::*;
use crate::SimDevice;
use crate::emulator::{Board, BoardLimits, Misbehaviour, serve_stream};
use crate::serial::LinkOptions;
use crate::serial::test_settings as settings;
use crate::spec::build_spec;

fn shg() -> ShgModel {
    ShgModel::new(ShgConfig::default(), Variant::True, 5).unwrap()
}

/// Off-grid values spread over the actuator range, some past it (clamped
/// by the host's policy first).
fn values(rows: usize, cols: usize, salt: u64) -> Array2<f32> {
    let mut s = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 10_000) as f32 / 9_000.0 - 0.05
    })
}

fn batch(rows: usize, repeats: u32, per_row_theta: bool) -> Batch {
    let m = shg();
    let theta_rows = if per_row_theta { rows } else { 1 };
    Batch {
        x: values(rows, m.n_in(), 1),
        theta: values(theta_rows, m.n_par(), 2),
        repeats,
        return_repeats: true,
    }
}

/// The batch measured in-process, and through a fake board of `max_rows`
/// drive memory and `max_repeats` per Acquire.
async fn both(
    b: Batch,
    max_rows: usize,
    max_repeats: u32,
    misbehaviour: Misbehaviour,
) -> (Measurement, Result<Measurement, Failure>) {
    let host = settings(4096, 64);
    let sim = crate::SimSettings {
        seed: 5,
        pace: None,
    };
    let mut local = SimDevice::new(shg(), host.clone(), sim).unwrap();
    let valid = validate(local.spec(), b).unwrap();
    let expected = local.execute(valid.clone()).await.unwrap();

    let (near, far) = tokio::io::duplex(1 << 20);
    let limits = BoardLimits {
        max_rows,
        max_repeats,
    };
    let board = Board::with(RigKind::Shg, 5, Variant::True, limits, misbehaviour).unwrap();
    tokio::spawn(serve_stream(board, far));
    let mut link = Link::new(near, LinkOptions::default());
    let Ok(Message::Identity(id)) = link.call(&Message::Identify(hilt_wire::VERSIONS)).await else {
        panic!("the emulated board identifies")
    };
    let spec = build_spec(&shg(), &host, Backend::Serial).unwrap();
    let plan = Plan::new(Grid::of(&spec), &id.capabilities);
    (expected, measure(&mut link, &plan, &valid).await)
}

fn assert_same(a: &Measurement, b: &Measurement) {
    assert_eq!(a.y, b.y);
    assert_eq!(a.y_repeats, b.y_repeats);
    assert_eq!(a.y_std, b.y_std);
    assert_eq!(a.applied_x, b.applied_x);
    assert_eq!(a.applied_theta, b.applied_theta);
    assert_eq!(a.flags, b.flags);
    assert_eq!(a.t_start, b.t_start);
    assert_eq!(a.t_end, b.t_end);
}

#[tokio::test]
async fn one_drive_in_repeat_pieces_measures_what_the_simulator_does() {
    // 5 repeats at 2 per Acquire: pieces 2, 2, 1.
    let (want, got) = both(batch(6, 5, false), 8, 2, Misbehaviour::default()).await;
    assert_same(&want, &got.unwrap());
}

#[tokio::test]
async fn chunked_drives_keep_the_abab_order_bit_for_bit() {
    // 7 rows on a board holding 3: chunks 3, 3, 1, reloaded every repeat.
    let (want, got) = both(batch(7, 3, true), 3, 64, Misbehaviour::default()).await;
    let got = got.unwrap();
    assert_same(&want, &got);
    assert!(
        got.flags.iter().any(|f| f.clamped),
        "the batch had clamped values"
    );
}

#[tokio::test]
async fn a_column_major_batch_is_sent_as_its_rows() {
    let row_major = batch(5, 2, true);
    let column_major = Batch {
        x: crate::column_major(&row_major.x),
        theta: crate::column_major(&row_major.theta),
        ..row_major.clone()
    };
    assert!(!column_major.x.is_standard_layout());
    let (want, _) = both(row_major, 8, 2, Misbehaviour::default()).await;
    let (_, got) = both(column_major, 8, 2, Misbehaviour::default()).await;
    assert_same(&want, &got.unwrap());
}

#[tokio::test]
async fn a_reply_for_other_values_never_becomes_a_measurement() {
    let misbehaviour = Misbehaviour {
        applied_offset: 0.1,
        ..Misbehaviour::default()
    };
    let (_, got) = both(batch(2, 1, false), 8, 2, misbehaviour).await;
    let err = got.unwrap_err();
    assert!(matches!(err, Failure::Protocol(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("applied_x: board applied values up to"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reply_of_the_wrong_shape_is_an_error_not_a_panic() {
    // One shared θ row sent, one per row answered: sizes the host's
    // check allows for some drive, but not for this one.
    let misbehaviour = Misbehaviour {
        theta_per_row: true,
        ..Misbehaviour::default()
    };
    let (_, got) = both(batch(3, 1, false), 8, 2, misbehaviour).await;
    let err = got.unwrap_err();
    assert!(matches!(err, Failure::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("applied_theta"), "{err}");
}

#[test]
fn rounds_cover_every_row_and_repeat_once_in_sweep_order() {
    let spec = build_spec(&shg(), &settings(4096, 64), Backend::Serial).unwrap();
    let caps = Capabilities {
        rig: "shg".into(),
        n_in: spec.n_in as u32,
        n_par: spec.n_par as u32,
        n_out: spec.n_out as u32,
        max_rows: 4,
        max_repeats: 3,
        input_range: [0.0, 1.0],
        param_range: [0.0, 1.0],
        seconds_per_sample: 0.005,
    };
    let plan = Plan::new(Grid::of(&spec), &caps);
    for (rows, repeats) in [(1, 1), (4, 7), (5, 2), (9, 1), (8, 3)] {
        let mut order = Vec::new();
        for r in rounds(&plan, rows, repeats) {
            assert!(r.rows <= 4 && r.repeats <= 3);
            for rep in r.first_repeat..r.first_repeat + r.repeats as usize {
                order.extend((r.first_row..r.first_row + r.rows).map(|i| (rep, i)));
            }
        }
        let sweep: Vec<_> = (0..repeats as usize)
            .flat_map(|rep| (0..rows).map(move |i| (rep, i)))
            .collect();
        assert_eq!(order, sweep, "{rows} rows × {repeats}");
    }
}
