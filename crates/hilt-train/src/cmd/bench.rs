//! `hilt bench`: the Execute round trip a trainer sees from this machine,
//! p50/p90 per batch size, so a lab can check its network and daemon (and
//! compare clients: `python/examples/bench_execute.py` times the same
//! calls from Python).

use std::time::{Duration, Instant};

use hilt_core::{Batch, Range};
use hilt_train::{Error, Result};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::shared::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    device: String,
    /// Batch sizes (rows), each timed in turn.
    #[arg(long, num_args = 1.., default_values_t = [1usize, 256])]
    batch: Vec<usize>,
    /// Timed calls per batch size.
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Untimed calls first.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    #[arg(long, default_value_t = 1)]
    repeats: u32,
}

/// Where to draw controls: the device's range, within [-1, 1] (a loopback
/// publishes all of f32).
fn span(r: Range) -> (f32, f32) {
    (r.min.max(-1.0), r.max.min(1.0).max(r.min.max(-1.0)))
}

pub async fn run(g: &Global, a: Args) -> Result<()> {
    if a.calls == 0 {
        return Err(Error::invalid("--calls: at least one call is timed"));
    }
    let client = g.connect().await?;
    let (spec, _) = client.describe(&a.device).await?;
    let lease = client.acquire(&a.device, Duration::from_secs(30)).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ((lx, hx), (lp, hp)) = (span(spec.input_range), span(spec.param_range));
    for &b in &a.batch {
        let x = Array2::from_shape_fn((b, spec.n_in), |_| rng.random_range(lx..=hx));
        let theta: Vec<f32> = (0..spec.n_par).map(|_| rng.random_range(lp..=hp)).collect();
        let batch = Batch {
            repeats: a.repeats,
            ..Batch::shared(x, &theta)
        };
        for _ in 0..a.warmup {
            lease.execute(&batch).await?;
        }
        let mut t = Vec::with_capacity(a.calls);
        for _ in 0..a.calls {
            let t0 = Instant::now();
            lease.execute(&batch).await?;
            t.push(t0.elapsed());
        }
        t.sort();
        let q = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
        println!(
            "{} batch {b} x {} (repeats {}), {} calls: p50 {:.0} us, p90 {:.0} us",
            a.device,
            spec.n_in,
            a.repeats,
            a.calls,
            q(0.5),
            q(0.9)
        );
    }
    lease.release().await?;
    Ok(())
}
