//! The trainer across processes: `hiltd` serving the demo rigs, `hilt`
//! collecting, fitting, training with both methods, and evaluating a
//! checkpoint. A reduced, seeded version of the headline experiment: PAT
//! must beat in-silico training clearly, and both must beat chance.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const HILT: &str = env!("CARGO_BIN_EXE_hilt");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_data() -> PathBuf {
    workspace().join("../shared/data")
}

/// `hiltd` from the release or debug target dir next to `hilt`.
fn hiltd_path() -> PathBuf {
    Path::new(HILT).with_file_name("hiltd")
}

struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(config: &Path) -> Self {
        Daemon::start_with(config, &[])
    }

    fn start_with(config: &Path, extra: &[&str]) -> Self {
        let bin = hiltd_path();
        assert!(
            bin.exists(),
            "{} not built: run the workspace tests (`cargo test --workspace`) or `cargo build -p hilt-daemon` first",
            bin.display()
        );
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("hiltd listening on ") else {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("hiltd did not start with {}:\n{err}", config.display());
        };
        let addr = addr.to_string();
        // Its log is not needed; a full pipe must not block it.
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Daemon {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hilt(args: &[&str]) -> std::process::Output {
    Command::new(HILT).args(args).output().unwrap()
}

fn metrics(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One reduced demo run (3 SHG layers, 80 epochs, a 4000-sample twin);
/// returns the run directory and (PAT, in-silico) test accuracy.
fn reduced_demo(url: &str, seed: u32, out: &Path) -> (f64, f64) {
    let data = shared_data();
    let o = hilt(&[
        "--server",
        url,
        "--quiet",
        "demo",
        "--task",
        "vowels",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--epochs",
        "80",
        "--layers",
        "3",
        "--twin-samples",
        "4000",
        "--twin-epochs",
        "40",
        "--twin-hidden",
        "128,128",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("| pat |") && table.contains("| insilico |"),
        "{table}"
    );
    let pat = metrics(&out.join("pat/metrics.json"));
    let sil = metrics(&out.join("insilico/metrics.json"));
    (
        pat["test_accuracy"].as_f64().unwrap(),
        sil["test_accuracy"].as_f64().unwrap(),
    )
}

/// `hilt eval` of a run's PAT checkpoint: the test accuracy it measures.
fn eval_checkpoint(url: &str, run: &Path) -> f64 {
    let data = shared_data();
    let ck = run.join("pat/checkpoint.safetensors");
    let o = hilt(&[
        "--server",
        url,
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let acc: f64 = text
        .split("test accuracy ")
        .nth(1)
        .and_then(|t| t.split(" %").next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {text}"));
    acc / 100.0
}

#[test]
fn reduced_vowel_experiment_pat_beats_insilico() {
    let d = Daemon::start(&workspace().join("crates/hilt-daemon/default.toml"));
    let runs = tempfile::tempdir().unwrap();
    let chance = 1.0 / 7.0;
    let mut margins = Vec::new();
    // Two seeds: one seed's margin can be small by luck (measured: 6 and
    // 16 points; the full 4-layer demo with its 20 000-sample twins: 22 to
    // 69 points over 5 seeds).
    for seed in [0, 1] {
        let (p, s) = reduced_demo(&d.url, seed, &runs.path().join(seed.to_string()));
        eprintln!("reduced vowels, seed {seed}: PAT {p:.3}, in-silico {s:.3}");
        assert!(p > chance + 0.4, "PAT {p} is not clearly above chance");
        assert!(s > chance, "in-silico {s} is not above chance");
        assert!(p > s, "seed {seed}: PAT {p} does not beat in-silico {s}");
        margins.push(p - s);
        if seed == 0 {
            // The checkpoint re-measures to the same neighbourhood on the
            // device. Right away: the rig's laser drifts with use, and a
            // later evaluation sees a different rig (measured: 92 % while
            // training, 63 % after another full run's worth of drift).
            let e = eval_checkpoint(&d.url, &runs.path().join("0"));
            assert!((e - p).abs() < 0.15, "eval {e} vs trained {p}");
        }
    }
    let mean = margins.iter().sum::<f64>() / margins.len() as f64;
    assert!(
        mean >= 0.10,
        "PAT beats in-silico by only {mean:.3} on average"
    );

    let out = runs.path().join("0");
    let pat = metrics(&out.join("pat/metrics.json"));
    let sil = metrics(&out.join("insilico/metrics.json"));
    // The run directory holds everything the issue promises.
    for key in [
        "method",
        "task",
        "device",
        "seed",
        "test_accuracy",
        "train_accuracy",
        "epochs",
        "wall_seconds",
        "device_busy_fraction",
        "twin_heldout_rel_error",
        "device_samples_train",
        "device_samples_eval",
        "twin_samples",
        "twin_test_accuracy",
    ] {
        assert!(!pat[key].is_null(), "metrics.json lacks {key}");
    }
    // The twins' recording: two devices, 4 000 probes × 2 repeats each.
    assert_eq!(pat["twin_samples"].as_u64(), Some(16_000));
    assert_eq!(pat["epochs"].as_u64().unwrap(), 80);
    assert_eq!(
        pat["twin_heldout_rel_error"], sil["twin_heldout_rel_error"],
        "same twins for both"
    );
    let csv = std::fs::read_to_string(out.join("pat/epochs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 81, "header + one row per epoch");
    let png = std::fs::read(out.join("pat/curve.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert!(out.join("twins/shg-hidden.npz").is_file());
}

/// The methods without a twin, reduced and seeded, on the vowels with
/// the devices `hilt train` picks itself: each learns well above chance,
/// records no twin, and counts the rig samples it spent.
#[test]
fn methods_without_a_twin_learn_the_vowels_and_use_none() {
    let d = Daemon::start(&workspace().join("crates/hilt-daemon/default.toml"));
    let runs = tempfile::tempdir().unwrap();
    let chance = 1.0 / 7.0;
    // (method, epochs, margin over chance): full runs reach 92-96 %
    // (PhyLL, 200 epochs) and 92-94 % (SPSA, 1000 epochs); these reduced
    // ones 90-94 % and 63-82 % (2 seeds each).
    for (method, epochs, margin) in [
        ("phyll", "20", 0.5),
        ("spsa", "150", 0.3),
        ("digital", "100", 0.5),
    ] {
        let out = runs.path().join(method);
        let o = hilt(&[
            "--server",
            &d.url,
            "--quiet",
            "train",
            "--task",
            "vowels",
            "--method",
            method,
            "--epochs",
            epochs,
            "--seed",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let m = metrics(&out.join("metrics.json"));
        let acc = m["test_accuracy"].as_f64().unwrap();
        eprintln!("{method}: test accuracy {acc:.3}");
        assert!(
            acc > chance + margin,
            "{method}: {acc} is not clearly above chance"
        );
        assert_eq!(m["twins"], serde_json::json!({}), "{method} used a twin");
        assert_eq!(m["twin_samples"].as_u64(), Some(0));
        assert!(m["twin_test_accuracy"].is_null());
        assert!(!out.join("twins").exists());
        let spent = m["device_samples_train"].as_u64().unwrap();
        if method == "digital" {
            assert_eq!(spent, 0, "the baseline measures nothing while learning");
            assert_eq!(m["device"], "none (digital)");
        } else {
            assert!(spent > 0);
        }
        // The cumulative rig samples end where metrics.json says learning
        // spent them (twin recording and training alike).
        let csv = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "rig_samples").unwrap();
        let last: u64 = csv
            .lines()
            .last()
            .unwrap()
            .split(',')
            .nth(col)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(last, spent);
    }
    // PhyLL ran on the device with room for the label slots.
    let m = metrics(&runs.path().join("phyll/metrics.json"));
    assert_eq!(m["device"], "shg-phyll");
}

/// A device that does not fit the network is refused before anything is
/// leased, naming the devices that would.
#[test]
fn a_device_that_does_not_fit_is_refused_with_those_that_do() {
    let d = Daemon::start(&workspace().join("crates/hilt-daemon/default.toml"));
    let out = tempfile::tempdir().unwrap();
    let o = hilt(&[
        "--server",
        &d.url,
        "train",
        "--task",
        "vowels",
        "--method",
        "pat",
        "--device",
        "shg-phyll",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--device shg-phyll")
            && err.contains("devices that fit")
            && err.contains("shg-readout (hidden layers on shg-hidden)"),
        "{err}"
    );
    let o = hilt(&[
        "--server",
        &d.url,
        "train",
        "--task",
        "vowels",
        "--method",
        "pat",
        "--device",
        "nonesuch",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not serve it") && err.contains("shg-readout"),
        "{err}"
    );
}

#[test]
fn bad_input_names_the_file_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let o = hilt(&[
        "train",
        "--device",
        "shg0",
        "--task",
        "vowels",
        "--method",
        "pat",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nowhere") && err.contains("no such directory"),
        "{err}"
    );

    let junk = dir.path().join("junk.npz");
    std::fs::write(&junk, b"nope").unwrap();
    let o = hilt(&["twin", "fit", "--data", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.npz") && err.contains("hilt collect"),
        "{err}"
    );

    let o = hilt(&[
        "train", "--device", "x", "--task", "vowels", "--method", "sgd", "--out", "o",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--method"));

    let o = hilt(&[
        "train", "--device", "x", "--task", "vowels", "--method", "pat", "--out", "o", "--twin",
        "nofile",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("'nofile' is not DEVICE=FILE"));
}

#[test]
fn collecting_from_an_unbounded_device_is_refused_not_a_panic() {
    // The embedded default serves loopback0, whose range is all of f32.
    let d = Daemon::start(&workspace().join("crates/hilt-daemon/default.toml"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loop.npz");
    let o = hilt(&[
        "--server",
        &d.url,
        "--quiet",
        "collect",
        "--device",
        "loopback0",
        "--samples",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("loopback0") && err.contains("too wide") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!out.exists());
}

/// What hiltd recorded, read without it: `hilt recording verify` names a
/// damaged record by its offset, and `hilt recording export` writes the
/// rest in `hilt collect`'s layout, ready for `hilt twin fit`.
#[test]
fn a_recording_is_verified_and_exported_for_twin_fitting() {
    use hilt_core::Batch;
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let config = format!(
        "[recording]\ndir = {:?}\nfsync = \"always\"\n[[device]]\nid = \"loop\"\n\
         kind = \"loopback\"\n[device.loopback]\nn_in = 4\nn_par = 1\n",
        rec.display().to_string()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent: Vec<Batch> = (0..5)
        .map(|k| {
            let mut b = Batch::shared(
                ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (k * 12 + i * 4 + j) as f32 / 64.0),
                &[k as f32 / 8.0],
            );
            b.repeats = 2;
            b.return_repeats = true;
            b
        })
        .collect();
    rt.block_on(async {
        let cfg = hilt_daemon::Config::parse(&config, "test").unwrap();
        let d = hilt_daemon::EmbeddedDaemon::start(cfg, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let c = hilt_client::Client::connect(d.url()).await.unwrap();
        let lease = c
            .acquire("loop", std::time::Duration::from_secs(30))
            .await
            .unwrap();
        for b in &sent {
            lease.execute(b).await.unwrap();
        }
        lease.release().await.unwrap();
        d.shutdown().await.unwrap();
    });
    // One flipped byte inside the third record.
    let seg = hilt_record::segments(&rec.join("loop")).unwrap().remove(0);
    let (third, _) = hilt_record::scan_segment(&seg).unwrap().records[2];
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[third as usize + 30] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let verify = Command::new(HILT)
        .args(["recording", "verify"])
        .arg(&rec)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !verify.status.success(),
        "verify passed a damaged recording:\n{out}"
    );
    assert!(out.contains("loop: 1 segments, 4 records"), "{out}");
    assert!(out.contains(&format!("offset {third} (")), "{out}");
    assert!(err.contains("1 corrupt record"), "{err}");

    let npz = dir.path().join("loop.npz");
    let export = Command::new(HILT)
        .args(["recording", "export"])
        .arg(&rec)
        .args(["--device", "loop", "--out"])
        .arg(&npz)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let data = hilt_train::twin::TwinData::load(&npz).unwrap();
    assert_eq!(data.len(), 12, "4 intact records of 3 rows");
    assert_eq!(data.y.shape(), &[2, 12, 4]);
    // Rows 0..6 are batches 0 and 1, rows 6..12 batches 3 and 4; a
    // loopback answers its input.
    let kept = [0usize, 1, 3, 4];
    for (slot, k) in kept.iter().enumerate() {
        for i in 0..3 {
            assert_eq!(data.x.row(slot * 3 + i), sent[*k].x.row(i));
            assert_eq!(data.theta[[slot * 3 + i, 0]], sent[*k].theta[[0, 0]]);
        }
    }
    let unknown = Command::new(HILT)
        .args(["recording", "export"])
        .arg(&rec)
        .args(["--device", "nope", "--out"])
        .arg(&npz)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success());
    assert!(
        err.contains("no recording of device 'nope' (recorded here: loop)"),
        "{err}"
    );
}

/// The columns of `epochs.csv` that are measurements, not clocks.
fn learning_columns(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| !(h.contains("wall") || h.contains("second") || h.contains("busy")))
        .map(|(i, _)| i)
        .collect();
    std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(lines.map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| cells[i].to_string()).collect()
        }))
        .map(|row: Vec<String>| row)
        .collect()
}

/// A training run recorded on the simulated rigs, then run again against
/// a hiltd that replays the recording: the same accuracies and the same
/// learning curve, with no rig.
#[test]
fn a_recorded_training_run_replays_to_the_same_results() {
    let runs = tempfile::tempdir().unwrap();
    let rec = runs.path().join("recording");
    let live = Daemon::start_with(
        &workspace().join("crates/hilt-daemon/default.toml"),
        &["--record-dir", rec.to_str().unwrap()],
    );
    let first = runs.path().join("live");
    let (pat, sil) = reduced_demo(&live.url, 3, &first);
    drop(live);

    // Every recorded device, served again.
    let mut config = String::new();
    for entry in std::fs::read_dir(&rec).unwrap() {
        let dev = entry.unwrap().path();
        if !dev.is_dir() {
            continue;
        }
        let id = dev.file_name().unwrap().to_string_lossy().into_owned();
        let recorded: usize = hilt_record::scan_device(&rec, &id)
            .unwrap()
            .iter()
            .map(|s| s.records.len())
            .sum();
        if recorded == 0 {
            continue; // served, never used by this run
        }
        let spec_file = std::fs::read_dir(&dev)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("spec-")
            })
            .unwrap();
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(spec_file).unwrap()).unwrap();
        config += &format!(
            "[[device]]\nid = {id:?}\nkind = {}\nbackend = \"replay\"\nrecording = {:?}\n\n",
            spec["kind"],
            rec.display().to_string()
        );
    }
    let replay_toml = runs.path().join("replay.toml");
    std::fs::write(&replay_toml, config).unwrap();
    let replay = Daemon::start(&replay_toml);
    let second = runs.path().join("replayed");
    let (pat2, sil2) = reduced_demo(&replay.url, 3, &second);
    assert_eq!((pat, sil), (pat2, sil2), "accuracies differ under replay");
    for method in ["pat", "insilico"] {
        assert_eq!(
            learning_columns(&first.join(method).join("epochs.csv")),
            learning_columns(&second.join(method).join("epochs.csv")),
            "{method}: epochs.csv differs under replay"
        );
    }
}

/// hiltd's default configuration with only the devices named.
fn config_with(devices: &[&str]) -> String {
    let text =
        std::fs::read_to_string(workspace().join("crates/hilt-daemon/default.toml")).unwrap();
    let mut blocks = text.split("[[device]]");
    let mut out = blocks.next().unwrap().to_string();
    for b in blocks {
        if devices.iter().any(|d| b.contains(&format!("id = \"{d}\""))) {
            out += "[[device]]";
            out += b;
        }
    }
    out
}

/// A network across two daemons (hidden layers on one, readout on the
/// other, neither serving the other's device): the run names both
/// servers, and losing one mid-run stops it with an error naming that
/// server, the last finished epoch's checkpoint kept.
#[test]
fn a_network_spans_two_daemons_and_a_lost_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cb) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    std::fs::write(&ca, config_with(&["shg-hidden"])).unwrap();
    std::fs::write(&cb, config_with(&["shg-readout"])).unwrap();
    let a = Daemon::start(&ca);
    let b = Daemon::start(&cb);
    let readout = format!("shg-readout@{}", b.url);
    let args = |out: &Path, epochs: &str| {
        [
            "--server",
            &a.url,
            "--quiet",
            "train",
            "--task",
            "vowels",
            "--method",
            "spsa",
            "--layers",
            "3",
            "--hidden-device",
            "shg-hidden",
            "--device",
            &readout,
            "--epochs",
            epochs,
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_string)
    };
    let out = dir.path().join("run");
    let o = hilt(&args(&out, "3").each_ref().map(String::as_str));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&out.join("metrics.json"));
    assert_eq!(m["servers"], serde_json::json!([a.url, b.url]));
    assert_eq!(m["device"], format!("shg-hidden+{readout}"));
    assert!(m["device_samples_train"].as_u64().unwrap() > 0);
    // The checkpoint knows where its devices are.
    let ckpt = out.join("checkpoint.safetensors");
    let o = hilt(&[
        "--server",
        &a.url,
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("test accuracy"));

    // The readout's daemon is lost after the first epoch.
    let lost = dir.path().join("lost");
    let child = Command::new(HILT)
        .args(args(&lost, "100000"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(lose_after_first_epoch(child, &lost, b) >= 1);
    assert!(lost.join("checkpoint.safetensors").exists());
}

/// Epochs the run in `run` has written to its epochs.csv.
fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("epochs.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Once the running `child` has finished an epoch in `run`, `daemon` is
/// lost: the run must stop with an error naming it. Returns the epochs
/// the run had finished.
fn lose_after_first_epoch(mut child: Child, run: &Path, daemon: Daemon) -> usize {
    while epochs_done(run) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        // Polling a file for a condition, not timing anything.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let url = daemon.url.clone();
    drop(daemon);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&format!("server {url}")), "{err}");
    epochs_done(run)
}

/// The network tensors of a checkpoint (not the training state beside
/// them), by name, as raw bytes.
fn network_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let buf = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("layer"))
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// A run stopped by a lost daemon and resumed (`--resume`, the lost
/// device's daemon back at a new address) ends with the network an
/// uninterrupted run trains, to the bit: in-silico training touches the
/// rigs only to score, so every parameter comes from the twins, the
/// shuffles, the schedule and Adam's moments, all of which the
/// checkpoint carries.
#[test]
fn an_interrupted_run_resumes_to_the_network_it_would_have_trained() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cb, cslow) = (
        dir.path().join("a.toml"),
        dir.path().join("b.toml"),
        dir.path().join("slow.toml"),
    );
    std::fs::write(&ca, config_with(&["shg-hidden"])).unwrap();
    let readout = config_with(&["shg-readout"]);
    std::fs::write(&cb, &readout).unwrap();
    // Scoring an epoch on this one takes ~1 s: the run cannot finish
    // between its first epoch and the daemon's loss.
    let slow = readout.replacen(
        "max_repeats = 64\n",
        "max_repeats = 64\nemulate_seconds_per_sample = 0.01\n",
        1,
    );
    assert_ne!(slow, readout);
    std::fs::write(&cslow, slow).unwrap();
    let a = Daemon::start(&ca);
    let b = Daemon::start(&cb);
    let run = |out: &Path, readout_url: &str, twins: &[String], epochs: &str| {
        let mut args: Vec<String> = [
            "--server",
            &a.url,
            "--quiet",
            "train",
            "--task",
            "vowels",
            "--method",
            "insilico",
            "--layers",
            "2",
            "--hidden-device",
            "shg-hidden",
            "--device",
            &format!("shg-readout@{readout_url}"),
            "--epochs",
            epochs,
            "--twin-samples",
            "1500",
            "--twin-epochs",
            "8",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_string)
        .to_vec();
        for t in twins {
            args.extend(["--twin".to_string(), t.clone()]);
        }
        args
    };
    let spawn = |args: &[String]| {
        Command::new(HILT)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // Twins once, for every run below.
    let fitted = dir.path().join("fitted");
    ok(spawn(&run(&fitted, &b.url, &[], "1"))
        .wait_with_output()
        .unwrap());
    let twin_of = |key: &str, url: &str| {
        let m = metrics(&fitted.join("metrics.json"));
        format!("{url}={}", m["twins"][key]["file"].as_str().unwrap())
    };
    let readout_key = format!("shg-readout@{}", b.url);
    let hidden_twin = twin_of("shg-hidden", "shg-hidden");
    let readout_twin = |url: &str| twin_of(&readout_key, &format!("shg-readout@{url}"));

    let whole = dir.path().join("whole");
    let twins = [hidden_twin.clone(), readout_twin(&b.url)];
    ok(spawn(&run(&whole, &b.url, &twins, "6"))
        .wait_with_output()
        .unwrap());

    // The same run with its readout on the slow daemon, lost after the
    // first epoch.
    let slow_b = Daemon::start(&cslow);
    let cut = dir.path().join("cut");
    let twins = [hidden_twin.clone(), readout_twin(&slow_b.url)];
    let child = spawn(&run(&cut, &slow_b.url, &twins, "6"));
    let stopped_at = lose_after_first_epoch(child, &cut, slow_b);
    assert!((1..6).contains(&stopped_at), "{stopped_at}");

    // A device swapped for another is refused; the same one at a new
    // address carries the run on.
    let back = Daemon::start(&cb);
    let back_url = back.url.clone();
    let resume = |device: &str| {
        hilt(&[
            "--server",
            &a.url,
            "--quiet",
            "train",
            "--resume",
            cut.to_str().unwrap(),
            "--device",
            &format!("{device}@{back_url}"),
        ])
    };
    let o = resume("shg-hidden");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("not swap it"), "{e}");
    let o = resume("shg-readout");
    ok(o);
    assert_eq!(
        network_tensors(&cut.join("checkpoint.safetensors")),
        network_tensors(&whole.join("checkpoint.safetensors")),
        "the resumed run's network differs from the uninterrupted one's"
    );
    // The twins' columns are the twins' business; the rigs' scores are
    // noisy measurements and differ.
    let curve = |run: &Path| -> Vec<Vec<String>> {
        learning_csv(&run.join("epochs.csv"))
            .into_iter()
            .map(|r| {
                [
                    "epoch",
                    "train_loss",
                    "train_accuracy",
                    "twin_test_accuracy",
                    "lr_physical",
                ]
                .map(|k| r[k].clone())
                .to_vec()
            })
            .collect()
    };
    assert_eq!(curve(&cut), curve(&whole));
    let m = metrics(&cut.join("metrics.json"));
    assert_eq!(m["epochs"], 6);
    assert_eq!(m["servers"], serde_json::json!([a.url, back_url]));
    // A finished run has nothing to resume, and says so without asking
    // its daemons.
    drop(back);
    let o = resume("shg-readout");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("nothing to resume"),
        "{e}"
    );
}

/// hiltd's default configuration, every SHG rig's registration creeping
/// `rate` channels per virtual hour (the default creeps 0.1).
fn creeping_config(rate: f64) -> String {
    let text =
        std::fs::read_to_string(workspace().join("crates/hilt-daemon/default.toml")).unwrap();
    let shg = "n_channels = 64\n";
    assert_eq!(
        text.matches(shg).count(),
        3,
        "the default's SHG rigs changed"
    );
    text.replace(
        shg,
        &format!("{shg}registration_drift_ch_per_h = {rate:?}\n"),
    )
}

/// Drift sentinels: on a rig creeping fast the probes trip (each event
/// past its threshold, in metrics.json and epochs.csv) and the twin is
/// refitted from a fresh recording it explains better; on a steady rig,
/// with the same seed and settings, none fires.
#[test]
fn a_drifting_rig_trips_its_sentinel_and_the_twin_is_refitted() {
    let dir = tempfile::tempdir().unwrap();
    let run = |rate: f64, refit: bool| {
        let config = dir.path().join(format!("creep{rate}.toml"));
        std::fs::write(&config, creeping_config(rate)).unwrap();
        let daemon = Daemon::start(&config);
        let out = dir.path().join(format!("run{rate}"));
        let mut args = vec![
            "--server",
            &daemon.url,
            "--quiet",
            "train",
            "--task",
            "vowels",
            "--method",
            "pat",
            "--layers",
            "2",
            "--epochs",
            "40",
            "--seed",
            "0",
            "--twin-samples",
            "2000",
            "--twin-epochs",
            "30",
            "--sentinel-every",
            "7",
            "--sentinel-rows",
            "32",
        ];
        if refit {
            args.push("--refit-on-drift");
        }
        args.extend(["--out", out.to_str().unwrap()]);
        let o = hilt(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            metrics(&out.join("metrics.json")),
            learning_csv(&out.join("epochs.csv")),
        )
    };

    let (m, rows) = run(120.0, true);
    assert_eq!(m["sentinel"]["every"], 7);
    let events = m["drift_events"].as_array().unwrap();
    assert!(
        !events.is_empty(),
        "a rig creeping 120 channels an hour tripped nothing"
    );
    for e in events {
        let (err, held, thr) = (
            e["probe_rel_error"].as_f64().unwrap(),
            e["heldout_rel_error"].as_f64().unwrap(),
            e["threshold"].as_f64().unwrap(),
        );
        assert!((thr - 3.0 * held).abs() < 1e-9 && err > thr, "{e}");
        let r = &e["refit"];
        assert!(Path::new(r["file"].as_str().unwrap()).exists(), "{e}");
        assert_eq!(r["rig_samples"], 4000, "2000 rows × 2 repeats");
        assert!(
            r["probe_rel_error"].as_f64().unwrap() < err,
            "the refit explains the probes better: {e}"
        );
    }
    let fired: usize = rows
        .iter()
        .map(|r| r["drift_events"].parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        fired,
        events.len(),
        "epochs.csv counts what metrics.json lists"
    );

    let (m, rows) = run(0.0, false);
    assert_eq!(
        m["drift_events"],
        serde_json::json!([]),
        "a steady rig tripped a sentinel"
    );
    for r in &rows {
        let ratio: f64 = r["drift_ratio"].parse().unwrap();
        assert!(ratio < 3.0, "epoch {}: ratio {ratio}", r["epoch"]);
    }
}

/// `epochs.csv` as one map per row, by column name.
fn learning_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            head.iter()
                .map(|h| h.to_string())
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}
