//! `hiltd [--config FILE] [--listen ADDR] [--record-dir DIR] [--insecure]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hilt_daemon::{Config, Error, config::DEFAULT_CONFIG};

/// See Cargo.toml: glibc's allocator gave the heap back to the kernel
/// after every large batch and faulted it in again for the next.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hiltd — hardware-in-the-loop daemon for physical neural networks.
///
/// Serves the rigs in the config over gRPC (hilt.v1, health, reflection).
/// Without --config it serves the embedded default: simulated rigs.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML config listing the devices (see deploy/ for examples).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the config); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Keep every measurement under DIR (overrides `[recording] dir`; the
    /// other recording settings keep their defaults if not configured).
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Listen beyond loopback without TLS or tokens (a warning every start).
    #[arg(long)]
    insecure: bool,
    /// Print the embedded default config and exit.
    #[arg(long)]
    print_default_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into journald or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hiltd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    };
    if let Some(addr) = cli.listen {
        config.server.listen = addr;
    }
    if let Some(dir) = cli.record_dir {
        match config.recording.as_mut() {
            Some(r) => r.dir = dir,
            None => {
                config.recording = Some(hilt_daemon::config::RecordingConfig::with_dir(dir));
            }
        }
    }
    // Every device is built before hiltd says it listens: a supervisor
    // waiting for that line must not take a config that fails for started.
    let (addr, origin) = (config.server.listen, config.origin.clone());
    hilt_daemon::auth::check_exposure(addr, &config.server, cli.insecure)?;
    let daemon = hilt_daemon::Prepared::build(config)?;
    let metrics = daemon.metrics_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    // First line on stdout: the address, for scripts and tests.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "hiltd listening on {local}")?;
        if let Some(m) = metrics {
            writeln!(out, "hiltd metrics on {m}")?;
        }
        out.flush()?;
    }
    tracing::info!(%local, config = %origin, "serving");
    daemon.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = term.recv() => tracing::info!("SIGTERM"),
    }
}
