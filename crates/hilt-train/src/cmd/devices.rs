//! `hilt devices`: one line per device the daemon serves.

use hilt_train::Result;

use super::shared::Global;

pub async fn run(g: &Global) -> Result<()> {
    let client = g.connect().await?;
    println!(
        "{:<16} {:<8} {:<8} {:>5} {:>5} {:>5}  ranges",
        "id", "kind", "model", "in", "par", "out"
    );
    for d in client.list_devices().await? {
        println!(
            "{:<16} {:<8} {:<8} {:>5} {:>5} {:>5}  x∈[{}, {}] θ∈[{}, {}]",
            d.id,
            d.kind,
            d.model,
            d.n_in,
            d.n_par,
            d.n_out,
            d.input_range.min,
            d.input_range.max,
            d.param_range.min,
            d.param_range.max
        );
    }
    Ok(())
}
