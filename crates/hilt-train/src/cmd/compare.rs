//! `hilt compare`: every training method on the same task, split, seed
//! and rig — PAT, in-silico, PhyLL, SPSA and the digital baseline by
//! default — with one table, `summary.md`, and `comparison.png`: test
//! accuracy against the rig samples each method spent (twin recording
//! included). It is `hilt demo` with all the methods.

use hilt_train::Result;

use super::demo;
use super::shared::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    demo: demo::Args,
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    demo::run_with(g, a.demo, &hilt_train::train::Method::ALL).await
}
