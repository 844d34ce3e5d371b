//! `hilt describe`: a device's spec and status as one JSON document, for
//! scripts (`jq .spec.hyperparameters`).

use hilt_train::{Error, Result};

use super::shared::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device's id (see `hilt devices`).
    device: String,
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    let client = g.connect().await?;
    let (spec, status) = client.describe(&a.device).await?;
    let doc = serde_json::json!({ "spec": spec, "status": status });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::invalid(e.to_string()))?;
    println!("{text}");
    Ok(())
}
