//! Runs the real `hiltd` binary as a child process on an ephemeral
//! loopback port, and reads the address it prints as its first line.
#![allow(dead_code)] // each test binary uses a different subset

pub mod tls;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

pub struct Hiltd {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Hiltd {
    /// Start hiltd with `config` (TOML text) or the embedded default.
    pub fn start(config: Option<&str>) -> Hiltd {
        Hiltd::launch(config, &[], &["--listen", "127.0.0.1:0"])
    }

    /// Start hiltd with `config`, `files` written beside it (certificates,
    /// by name) and these command-line arguments.
    pub fn launch(config: Option<&str>, files: &[(&str, &[u8])], args: &[&str]) -> Hiltd {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("hiltd.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hiltd"));
        cmd.args(args);
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write file");
        }
        if let Some(text) = config {
            let path = dir.path().join("hiltd.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        // Started from elsewhere: paths in the config are the config's.
        cmd.current_dir(std::env::temp_dir());
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn hiltd");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read hiltd's first line");
        let addr = line
            .trim()
            .strip_prefix("hiltd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log:\n{}", read(&log)))
            .parse()
            .expect("socket address");
        Hiltd {
            child,
            addr,
            log,
            stdout,
            _dir: dir,
        }
    }

    /// The next line hiltd prints on stdout (after the first).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read hiltd's stdout");
        line.trim().to_string()
    }

    /// The URL for a TLS client: the test certificate is for `localhost`.
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// SIGKILL: no shutdown, no flush; what the kernel has is all there is.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.child.wait().expect("wait for hiltd")
    }
}

fn read(p: &PathBuf) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

impl Drop for Hiltd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- hiltd log ----\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small lab for tests: a fast SHG rig per limit policy, one paced to
/// emulate a real rig, and a loopback.
pub const TEST_CONFIG: &str = r#"
[server]
lease_ttl_s = 30.0

[[device]]
id = "shg0"
kind = "shg"
seed = 7
max_batch = 64
max_repeats = 8
[device.limits]
policy = "reject"

[[device]]
id = "shg-clamp"
kind = "shg"
seed = 7
[device.limits]
input = [0.0, 1.0]
param = [0.0, 0.9]
policy = "clamp"

[[device]]
id = "shg-slow"
kind = "shg"
seed = 7
emulate_seconds_per_sample = 0.002

[[device]]
id = "loop"
kind = "loopback"
max_batch = 1024
[device.loopback]
n_in = 4
n_par = 1
"#;
