//! `firmware-sim --rig shg|plate|circuit [--link PATH] [--seed N]`: an
//! emulated interface board on a pseudo-terminal. The first line on stdout
//! is `PTY <path>`; another such line follows every replug.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use firmware_sim::faults::FaultConfig;
use firmware_sim::serve::{Options, serve};
use hilt_physics::{RigKind, Variant};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Model {
    True,
    Nominal,
}

#[derive(Debug, Parser)]
#[command(version, about = "Emulated hilt interface board on a pseudo-terminal")]
struct Cli {
    /// The rig the board fronts: shg, plate or circuit.
    #[arg(long, value_parser = board_rig)]
    rig: RigKind,
    /// Keep this path a symlink to the current pseudo-terminal.
    #[arg(long)]
    link: Option<PathBuf>,
    /// Seed of the simulated rig (as `seed` in hiltd's config).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Simulator variant.
    #[arg(long, value_enum, default_value = "true")]
    model: Model,
    /// Probability that a frame (either direction) is corrupted.
    #[arg(long, default_value_t = 0.0)]
    corrupt_rate: f64,
    /// Probability that a frame (either direction) is lost.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Probability that a reply is sent twice.
    #[arg(long, default_value_t = 0.0)]
    dup_rate: f64,
    /// Probability that a reply stalls for --stall-ms.
    #[arg(long, default_value_t = 0.0)]
    stall_rate: f64,
    #[arg(long, default_value_t = 500)]
    stall_ms: u64,
    /// Unplug after every N answered requests, as the next one arrives
    /// (it is lost); 0: never.
    #[arg(long, default_value_t = 0)]
    unplug_every: u64,
    /// Time unplugged before a new pseudo-terminal appears.
    #[arg(long, default_value_t = 200)]
    replug_after_ms: u64,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
}

/// A rig that has a board (a loopback is the simulator's alone).
fn board_rig(s: &str) -> Result<RigKind, String> {
    let rig: RigKind = s.parse()?;
    if !rig.has_board() {
        return Err(format!("'{rig}' has no board: use shg, plate or circuit"));
    }
    Ok(rig)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let faults = FaultConfig {
        corrupt: cli.corrupt_rate,
        drop: cli.drop_rate,
        dup: cli.dup_rate,
        stall: cli.stall_rate,
        stall_ms: cli.stall_ms,
        unplug_every: cli.unplug_every,
        replug_after_ms: cli.replug_after_ms,
    };
    if let Err(e) = faults.validate() {
        eprintln!("firmware-sim: {e}");
        std::process::exit(2);
    }
    let opts = Options {
        rig: cli.rig,
        seed: cli.seed,
        variant: match cli.model {
            Model::True => Variant::True,
            Model::Nominal => Variant::Nominal,
        },
        link: cli.link,
        faults,
        fault_seed: cli.fault_seed,
    };
    let announce = |p: &std::path::Path| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PTY {}", p.display());
        let _ = out.flush();
    };
    if let Err(e) = serve(opts, announce).await {
        eprintln!("firmware-sim: {e}");
        std::process::exit(1);
    }
}
