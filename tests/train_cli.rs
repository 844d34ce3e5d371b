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
        let bin = hiltd_path();
        assert!(
            bin.exists(),
            "{} not built: run the workspace tests (`cargo test --workspace`) or `cargo build -p hilt-daemon` first",
            bin.display()
        );
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("hiltd listening on ")
            .unwrap()
            .to_string();
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
    let d = Daemon::start(&workspace().join("crates/hilt-train/demo.toml"));
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
    ] {
        assert!(!pat[key].is_null(), "metrics.json lacks {key}");
    }
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
