//! `hilt collect`: record a device for fitting a twin.

use std::path::PathBuf;

use hilt_train::Result;
use hilt_train::rig::Rig;
use hilt_train::twin::{self, CollectOptions};

use super::shared::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    device: String,
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    #[arg(long, default_value_t = 2)]
    repeats: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output `.npz`.
    #[arg(long)]
    out: PathBuf,
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    let client = g.connect().await?;
    let mut rig = Rig::open(&client, &a.device).await?;
    let opt = CollectOptions {
        samples: a.samples,
        repeats: a.repeats,
        seed: a.seed,
        quiet: g.quiet,
        ..CollectOptions::default()
    };
    let data = twin::collect(&mut rig, &opt).await?;
    let busy = rig.busy();
    rig.release().await?;
    data.save(&a.out)?;
    println!(
        "{}: {} samples × {} repeats from '{}' ({:.1} s of rig time)",
        a.out.display(),
        data.len(),
        a.repeats,
        a.device,
        busy.as_secs_f64()
    );
    Ok(())
}
