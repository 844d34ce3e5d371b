use super::*;

#[test]
fn embedded_default_serves_the_training_setups_of_the_three_rigs() {
    let c = Config::embedded_default().unwrap();
    let ids: Vec<&str> = c.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "shg-hidden",
            "shg-readout",
            "shg-phyll",
            "plate-hidden",
            "plate-readout",
            "circuit-hidden",
            "circuit-readout",
            "loopback0"
        ]
    );
    assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text =
        "[[device]]\nid = \"a\"\nkind = \"shg\"\n[device.limits]\npolicy = \"reject\"\nmaxx = 3\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(e.starts_with("lab.toml: "), "{e}");
    assert!(e.contains("line 6"), "{e}");
    assert!(e.contains("maxx"), "{e}");
}

#[test]
fn misspelt_physics_key_is_rejected() {
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\n[device.shg]\nn_chanels = 32\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(e.contains("n_chanels") && e.contains("line 5"), "{e}");
}

#[test]
fn duplicate_ids_point_at_the_second_entry() {
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\n\n[[device]]\nid = \"a\"\nkind = \"shg\"\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert_eq!(e, "lab.toml:6: device 'a': duplicate device id");
}

#[test]
fn bad_policy_and_kind_mismatch_are_named() {
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nlimits = { policy = \"wrap\" }\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(e.contains("wrap") && e.contains("reject"), "{e}");
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nloopback = { n_in = 2 }\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert_eq!(
        e,
        "lab.toml:2: device 'a': [device.loopback] given for a device of kind 'shg'"
    );
}

#[test]
fn serial_backend_needs_its_table_and_nothing_simulated() {
    let dev = "[[device]]\nid = \"a\"\nkind = \"shg\"\n";
    let e = Config::parse(&format!("{dev}backend = \"serial\"\n"), "lab.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "lab.toml:2: device 'a': backend 'serial' needs a [device.serial] table with port"
    );
    let e = Config::parse(
        &format!("{dev}[device.serial]\nport = \"/dev/x\"\n"),
        "lab.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("given for backend 'sim'"), "{e}");
    let text = format!(
        "{dev}backend = \"serial\"\nemulate_seconds_per_sample = 0.1\n[device.serial]\nport = \"/dev/x\"\n"
    );
    let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
    assert!(
        e.contains("emulate_seconds_per_sample is for simulated"),
        "{e}"
    );
    let text = format!(
        "{dev}backend = \"serial\"\n[device.serial]\nport = \"/dev/x\"\nbaud_rate = 9600\n"
    );
    let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
    assert!(e.contains("baud_rate") && e.contains("line 7"), "{e}");
    let text = format!("{dev}backend = \"serial\"\n[device.serial]\nport = \"/dev/x\"\n");
    let c = Config::parse(&text, "lab.toml").unwrap();
    let BackendConfig::Serial { link: s, .. } = &c.devices[0].backend else {
        panic!("a serial backend")
    };
    assert_eq!(
        (s.baud, s.link.timeout, s.link.attempts),
        (115_200, Duration::from_millis(2000), 3)
    );
}

#[test]
fn every_example_in_deploy_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/ exists") {
        let p = entry.expect("readable").path();
        if p.extension().is_some_and(|e| e == "toml") {
            Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no example configs in deploy/");
}

#[test]
fn every_rig_kind_has_its_table() {
    for kind in RigKind::ALL {
        let table = match kind.default_physics() {
            Some(p) => toml::Value::try_from(&p).unwrap(),
            None => {
                toml::Value::try_from(hilt_physics::LoopbackConfig { n_in: 3, n_par: 0 }).unwrap()
            }
        };
        let mut device = toml::Table::new();
        device.insert("id".into(), "a".into());
        device.insert("kind".into(), kind.as_str().into());
        device.insert(kind.as_str().into(), table);
        let mut file = toml::Table::new();
        file.insert("device".into(), toml::Value::Array(vec![device.into()]));
        let text = toml::to_string(&file).unwrap();
        let c = Config::parse(&text, "lab.toml").unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(c.devices[0].kind(), kind);
    }
}

#[test]
fn a_serial_device_has_no_seed_and_the_server_table_names_its_line() {
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nbackend = \"serial\"\nseed = 3\n[device.serial]\nport = \"/dev/x\"\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("lab.toml:2: device 'a': seed is for simulated"),
        "{e}"
    );
    let text = "# lab\n[server]\nqueue_depth = 0\n[[device]]\nid = \"a\"\nkind = \"shg\"\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("lab.toml:") && e.contains("server.queue_depth must be >= 1"),
        "{e}"
    );
    let line: usize = e["lab.toml:".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=3).contains(&line), "{e}");
    let text = "[server]\nlease_ttl_s = 1e300\n[[device]]\nid = \"a\"\nkind = \"shg\"\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(e.contains("server.lease_ttl_s"), "{e}");
    let text = "[[device]]\nid = \"a\"\nkind = \"shg\"\nemulate_seconds_per_sample = 1e300\n";
    let e = Config::parse(text, "lab.toml").unwrap_err().to_string();
    assert!(
        e.contains("emulate_seconds_per_sample: ") && e.contains("is not a duration"),
        "{e}"
    );
}

#[test]
fn interlocks_that_cannot_work_are_refused_with_the_key() {
    let dev = |kind: &str, table: &str| {
        format!("[[device]]\nid = \"a\"\nkind = \"{kind}\"\n[device.interlock]\n{table}\n")
    };
    let cases = [
        (
            dev("shg", "drive_energy = 10.0\ndrive_window_s = 60"),
            "a shg rig is not heated by its drive",
        ),
        (
            dev("plate", "drive_energy = 10.0"),
            "drive_energy and drive_window_s go together",
        ),
        (
            dev("plate", "rate_window_s = 5"),
            "rate_window_s given without max_samples_per_s",
        ),
        (
            dev("plate", "max_samples_per_s = -1"),
            "interlock.max_samples_per_s: -1 must be finite and > 0",
        ),
        (
            dev("plate", "max_samples_per_s = 10\nrate_window_s = 1e9"),
            "interlock.rate_window_s: 1000000000 must be at most 86400 s",
        ),
        (
            dev("circuit", "drive_energy = nan\ndrive_window_s = 1"),
            "interlock.drive_energy: NaN must be finite and > 0",
        ),
        (
            dev("plate", "max_samples = 10"),
            "unknown field `max_samples`",
        ),
    ];
    for (text, want) in cases {
        let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{text}\n=> {e}");
    }
    let ok = Config::parse(
        &dev(
            "plate",
            "max_samples_per_s = 20\nrate_window_s = 10\ndrive_energy = 5.0\ndrive_window_s = 60",
        ),
        "lab.toml",
    )
    .unwrap();
    let i = ok.devices[0].interlock;
    assert_eq!(i.samples.unwrap().amount, 200.0);
    assert_eq!(
        i.drive_energy.unwrap().window,
        std::time::Duration::from_secs(60)
    );
}

#[test]
fn server_bounds_must_be_at_least_one() {
    for key in ["max_waiters", "max_connections"] {
        let text = format!("[server]\n{key} = 0\n[[device]]\nid = \"a\"\nkind = \"shg\"\n");
        let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains(&format!("server.{key} must be >= 1")), "{e}");
    }
}

#[test]
fn a_replayed_device_takes_only_id_kind_and_recording() {
    let dev = |extra: &str| {
        format!("[[device]]\nid = \"a\"\nkind = \"shg\"\nbackend = \"replay\"\n{extra}\n")
    };
    let cases = [
        (dev(""), "needs recording = \"DIR\""),
        (
            dev("recording = \"r\"\nseed = 3"),
            "seed given for backend \"replay\"",
        ),
        (
            dev("recording = \"r\"\n[device.shg]\nn_in = 12"),
            "[device.shg] given for backend \"replay\"",
        ),
        (
            "[[device]]\nid = \"a\"\nkind = \"shg\"\nrecording = \"r\"\n".to_string(),
            "recording = \"DIR\" is for backend \"replay\"",
        ),
    ];
    for (text, want) in cases {
        let e = Config::parse(&text, "lab.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{text}\n=> {e}");
    }
    let ok = Config::parse(&dev("recording = \"r\""), "lab.toml").unwrap();
    assert_eq!(
        ok.devices[0].backend,
        BackendConfig::Replay { dir: "r".into() }
    );
}
