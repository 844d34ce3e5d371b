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

/// This lease's batches from hiltd's recording, if it records the device.
async fn recorded(
    client: &hilt_client::Client,
    device: &str,
    lease: &str,
    mine: &twin::TwinData,
) -> Result<Option<twin::TwinData>> {
    use futures::TryStreamExt;
    let req = hilt_client::v1::ReadRecordingRequest {
        device_id: device.to_string(),
        lease_id: lease.to_string(),
        ..Default::default()
    };
    let stream = match client.read_recording(req).await {
        Ok(s) => s,
        Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let ms: Vec<_> = stream.map_ok(|(_, m)| m).try_collect().await?;
    let kept = twin::TwinData::from_measurements(mine.spec.clone(), &ms)?;
    if kept.x != mine.x || kept.y != mine.y {
        return Err(hilt_train::Error::invalid(format!(
            "hiltd's recording of this lease ({} rows) differs from the answers received \
             ({} rows): check `hilt recording verify`",
            kept.len(),
            mine.len()
        )));
    }
    Ok(Some(kept))
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
    let mine = twin::collect(&mut rig, &opt).await?;
    let busy = rig.busy();
    let lease = rig.lease().id().to_string();
    rig.release().await?;
    // One copy of the truth: when hiltd records the device, the file is
    // made from its recording of this lease; what came back over the
    // wire only checks it.
    let data = match recorded(&client, &a.device, &lease, &mine).await? {
        Some(d) => d,
        None => mine,
    };
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
