//! `hilt eval`: re-measure a trained network's accuracy on its devices.

use std::path::PathBuf;

use hilt_train::Result;
use hilt_train::fleet::Fleet;
use hilt_train::net::{Network, Physics};
use hilt_train::train;

use super::shared::{DataArgs, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `checkpoint.safetensors` from `hilt train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Measurements averaged per sample [default: as in training].
    #[arg(long)]
    repeats: Option<u32>,
    #[command(flatten)]
    data: DataArgs,
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    let client = g.connect().await?;
    let (net, meta) = Network::load(&a.checkpoint)?;
    let dataset = a.data.load(meta.task)?;
    let ids = net.device_ids();
    // A network trained across daemons names its other daemons in its
    // devices' keys (ID@URL).
    let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
    let fleet = Fleet::connect(client, g.server(), &keys, &g.connect_options()?).await?;
    fleet.describe_again(&net.devices).await?;
    let mut rigs = fleet.rigs(&ids).await?;
    let r = a.repeats.unwrap_or(meta.repeats);
    let test = train::accuracy(&net, &dataset.test, Physics::Rigs(&mut rigs, r)).await?;
    let tr = train::accuracy(&net, &dataset.train, Physics::Rigs(&mut rigs, r)).await?;
    for rig in rigs.into_values() {
        rig.release().await?;
    }
    println!(
        "{} ({} after {} epochs of {}, {r} repeat(s)): test accuracy {:.2} %, train accuracy {:.2} % ({})",
        a.checkpoint.display(),
        meta.task.as_str(),
        meta.epoch,
        meta.method,
        100.0 * test,
        100.0 * tr,
        dataset.split
    );
    Ok(())
}
