use crate::{DeviceSettings, SimDevice, SimSettings};
use hilt_core::{Batch, Device, validate};
use hilt_physics::shg::{ShgConfig, ShgModel};

use super::*;

fn load(board_rows: u32, x: Vec<f32>, theta: Vec<f32>) -> Message {
    Message::LoadDrive(Drive {
        rows: board_rows,
        x,
        theta,
    })
}

#[tokio::test]
async fn identify_reports_the_rig_and_refuses_foreign_versions() {
    let mut b = Board::new(RigKind::Shg, 7, Variant::True).unwrap();
    let Message::Identity(id) = b.handle(Message::Identify(VERSIONS)).await else {
        panic!("identity expected");
    };
    assert_eq!(id.capabilities.rig, "shg");
    assert_eq!(
        (
            id.capabilities.n_in,
            id.capabilities.n_par,
            id.capabilities.n_out
        ),
        (12, 40, 7)
    );
    let reply = b
        .handle(Message::Identify(hilt_wire::VersionRange {
            min: 5,
            max: 9,
        }))
        .await;
    assert!(matches!(
        reply,
        Message::Error(Refusal {
            code: ErrorCode::UnsupportedVersion,
            ..
        })
    ));
}

#[tokio::test]
async fn a_board_measures_what_the_in_process_simulator_measures() {
    // Same seed, same physics, same rows: bit-identical, as the serial
    // path must be.
    let mut b = Board::new(RigKind::Shg, 7, Variant::True).unwrap();
    let x: Vec<f32> = (0..3 * 12).map(|i| (i % 5) as f32 / 4.0).collect();
    let theta = vec![0.5f32; 40];
    assert_eq!(
        b.handle(load(3, x.clone(), theta.clone())).await,
        Message::Loaded { rows: 3 }
    );
    let Message::Result(r) = b.handle(Message::Acquire { repeats: 2 }).await else {
        panic!("result expected");
    };
    let settings = DeviceSettings {
        id: "x".into(),
        input_limits: None,
        param_limits: None,
        policy: LimitPolicy::Clamp,
        max_batch: 256,
        max_repeats: 64,
    };
    let mut dev = SimDevice::new(
        ShgModel::new(ShgConfig::default(), Variant::True, 7).unwrap(),
        settings,
        SimSettings {
            seed: 7,
            pace: None,
        },
    )
    .unwrap();
    let batch = Batch {
        x: Array2::from_shape_vec((3, 12), x).unwrap(),
        theta: Array2::from_shape_vec((1, 40), theta).unwrap(),
        repeats: 2,
        return_repeats: true,
    };
    let m = dev
        .execute(validate(dev.spec(), batch).unwrap())
        .await
        .unwrap();
    let want: Vec<f32> = m.y_repeats.unwrap().into_iter().collect();
    assert_eq!(r.y, want);
    assert_eq!(r.applied_x, m.applied_x.into_iter().collect::<Vec<_>>());
    assert_eq!((r.rows, r.repeats), (3, 2));
}

#[tokio::test]
async fn configure_is_all_or_nothing_and_names_the_bad_key() {
    let mut b = Board::new(RigKind::Plate, 1, Variant::True).unwrap();
    let before = b.config_hash();
    let reply = b
        .handle(Message::Configure(vec![
            ("n_bins".into(), "20".into()),
            ("no_such_key".into(), "1".into()),
        ]))
        .await;
    let Message::Error(r) = reply else {
        panic!("refusal expected")
    };
    assert_eq!(r.code, ErrorCode::BadPayload);
    assert!(r.detail.contains("'no_such_key'"), "{}", r.detail);
    assert_eq!(b.config_hash(), before, "nothing applied");
    assert_eq!(b.spec().n_out, 10);

    // A value the physics refuses: also nothing applied.
    let reply = b
        .handle(Message::Configure(vec![(
            "drive.limit".into(),
            "1.5".into(),
        )]))
        .await;
    assert!(matches!(
        reply,
        Message::Error(Refusal {
            code: ErrorCode::OutOfRange,
            ..
        })
    ));
    assert_eq!(b.config_hash(), before);

    let reply = b
        .handle(Message::Configure(vec![
            ("n_bins".into(), "20".into()),
            ("drive.copies".into(), "2".into()),
        ]))
        .await;
    assert!(matches!(reply, Message::Configured { config_hash } if config_hash != before));
    assert_eq!((b.spec().n_out, b.spec().n_par), (20, 392));
}

#[tokio::test]
async fn acquire_needs_a_drive_and_sizes_are_checked() {
    let mut b = Board::new(RigKind::Circuit, 2, Variant::True).unwrap();
    assert!(matches!(
        b.handle(Message::Acquire { repeats: 1 }).await,
        Message::Error(Refusal {
            code: ErrorCode::NotReady,
            ..
        })
    ));
    let n = b.spec().n_in;
    let reply = b.handle(load(2, vec![0.0; n], vec![0.0; n])).await;
    let Message::Error(r) = reply else {
        panic!("refusal expected")
    };
    assert_eq!(r.code, ErrorCode::BadPayload);
    assert!(r.detail.contains("2 rows need x of"), "{}", r.detail);
    assert!(matches!(
        b.handle(load(MAX_ROWS as u32 + 1, vec![], vec![])).await,
        Message::Error(Refusal {
            code: ErrorCode::OutOfRange,
            ..
        })
    ));
    assert_eq!(
        b.handle(load(1, vec![0.1; n], vec![0.0; n])).await,
        Message::Loaded { rows: 1 }
    );
    assert!(matches!(
        b.handle(Message::Acquire {
            repeats: MAX_REPEATS + 1
        })
        .await,
        Message::Error(Refusal {
            code: ErrorCode::OutOfRange,
            ..
        })
    ));
    // Replies are not requests.
    assert!(matches!(
        b.handle(Message::Loaded { rows: 1 }).await,
        Message::Error(Refusal {
            code: ErrorCode::UnknownMessage,
            ..
        })
    ));
}

#[tokio::test]
async fn the_board_clamps_what_it_cannot_play() {
    let mut b = Board::new(RigKind::Circuit, 2, Variant::True).unwrap();
    let n = b.spec().n_in;
    let lim = b.spec().input_range;
    b.handle(load(1, vec![lim.max + 5.0; n], vec![0.0; n]))
        .await;
    let Message::Result(r) = b.handle(Message::Acquire { repeats: 1 }).await else {
        panic!("result expected")
    };
    assert!(r.applied_x.iter().all(|v| *v <= lim.max));
}

#[tokio::test]
async fn safe_discards_the_loaded_drive_until_the_next_load() {
    let mut b = Board::new(RigKind::Shg, 7, Variant::True).unwrap();
    let loaded = b.handle(load(1, vec![0.5; 12], vec![0.5; 40])).await;
    assert!(matches!(loaded, Message::Loaded { rows: 1 }), "{loaded:?}");
    assert_eq!(b.handle(Message::Safe).await, Message::Safed);
    let after = b.handle(Message::Acquire { repeats: 1 }).await;
    assert!(
        matches!(&after, Message::Error(r) if r.code == ErrorCode::NotReady),
        "{after:?}"
    );
    // Safe is idempotent, and a new drive measures again.
    assert_eq!(b.handle(Message::Safe).await, Message::Safed);
    b.handle(load(1, vec![0.5; 12], vec![0.5; 40])).await;
    let m = b.handle(Message::Acquire { repeats: 1 }).await;
    assert!(matches!(m, Message::Result(_)), "{m:?}");
}
