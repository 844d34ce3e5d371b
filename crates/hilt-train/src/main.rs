//! `hilt`: the trainer's command line. Each command lives in its own file
//! under `cmd/` with its arguments; this file only parses, sets up logging
//! and the runtime, and reports the error a command ends with.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// See Cargo.toml: glibc's allocator returned candle's large temporaries to
/// the kernel after every step (a twin fit spent as long in page faults as
/// in arithmetic).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "hilt",
    version,
    about = "Train physical neural networks on hiltd's rigs"
)]
struct Cli {
    #[command(flatten)]
    global: cmd::Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the daemon's devices.
    Devices,
    /// Everything a device publishes about itself and its status, as JSON.
    Describe(cmd::describe::Args),
    /// Record (x, θ, y) for fitting a twin: uniform random controls inside
    /// the device's published ranges.
    Collect(cmd::collect::Args),
    /// Digital twins.
    #[command(subcommand)]
    Twin(cmd::twin::Cmd),
    /// Train a network on the daemon's devices.
    Train(Box<cmd::train::Args>),
    /// Measure a trained network's accuracy on the device.
    Eval(cmd::eval::Args),
    /// The paper's experiment: PAT vs in-silico on the all-physical SHG
    /// vowel network, and a digital baseline of the same size.
    Demo(Box<cmd::demo::Args>),
    /// Every method (PAT, in-silico, PhyLL, SPSA, digital) on one task:
    /// a table and a plot of accuracy against rig samples.
    Compare(Box<cmd::compare::Args>),
    /// Tokens for a hiltd on the lab network.
    #[command(subcommand)]
    Token(cmd::token::Cmd),
    /// What hiltd recorded: verify it, export it for numpy and twin fits.
    #[command(subcommand)]
    Recording(cmd::recording::Cmd),
    /// Execute round trip from here: p50/p90 per batch size.
    Bench(cmd::bench::Args),
    /// Halt, resume, break a lease (admin token).
    #[command(subcommand)]
    Admin(cmd::admin::Cmd),
}

impl Cmd {
    async fn run(self, g: &cmd::Global) -> hilt_train::Result<()> {
        match self {
            Cmd::Devices => cmd::devices::run(g).await,
            Cmd::Describe(a) => cmd::describe::run(g, a).await,
            Cmd::Collect(a) => cmd::collect::run(g, a).await,
            Cmd::Twin(c) => cmd::twin::run(g, c).await,
            Cmd::Train(a) => cmd::train::run(g, *a).await,
            Cmd::Eval(a) => cmd::eval::run(g, a).await,
            Cmd::Demo(a) => cmd::demo::run(g, *a).await,
            Cmd::Compare(a) => cmd::compare::run(g, *a).await,
            Cmd::Token(c) => cmd::token::run(c),
            Cmd::Admin(c) => cmd::admin::run(g, c).await,
            Cmd::Bench(a) => cmd::bench::run(g, a).await,
            Cmd::Recording(c) => cmd::recording::run(c),
        }
    }
}

/// candle splits every matrix product over all cores (rayon's
/// `RAYON_NUM_THREADS`, default: every core). A trainer's products are
/// small — a batch of 32 through 256-wide twins — and splitting them costs
/// more in hand-offs than it saves, while the daemon beside it needs the
/// cores: on this project's 2-core machine, single-threaded candle took a
/// 4-layer vowels PAT run's rig busy fraction from 0.942 to 0.970 and a
/// twin fit from 9.2 to 8.2 s. A `RAYON_NUM_THREADS` the user set wins.
fn candle_single_threaded() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before the runtime or any
        // other thread exists: nothing can read the environment while it
        // changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
    }
}

fn main() -> ExitCode {
    candle_single_threaded();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hilt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli.cmd.run(&cli.global)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hilt: error: {e}");
            ExitCode::FAILURE
        }
    }
}
