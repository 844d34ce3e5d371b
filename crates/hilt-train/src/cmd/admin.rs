//! `hilt admin`: what only an admin token may do. Halt stops every rig
//! taking new work (the batch in flight finishes, serial boards go to
//! their safe state), resume undoes it, break takes a rig from whoever
//! holds it. Each is in hiltd's audit trail under the token's name.

use hilt_train::Result;

use super::shared::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Every device refuses new batches until `hilt admin resume`.
    Halt {
        /// Why: shown to every client refused, and in the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take work again after a halt.
    Resume,
    /// End the lease of whoever holds DEVICE.
    Break {
        /// The device to free.
        device: String,
        /// Why: the holder's next call is told.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn run(g: &Global, c: Cmd) -> Result<()> {
    let client = g.connect().await?;
    match c {
        Cmd::Halt { reason } => {
            let (safe, not_safe) = client.halt(&reason).await?;
            println!("halted: every device refuses new batches until `hilt admin resume`");
            for d in safe {
                println!("  {d}: safe");
            }
            for d in not_safe {
                println!("  {d}");
            }
        }
        Cmd::Resume => {
            client.resume().await?;
            println!("resumed");
        }
        Cmd::Break { device, reason } => {
            if client.break_lease(&device, &reason).await? {
                println!("{device}: lease broken");
            } else {
                println!("{device}: nobody held it");
            }
        }
    }
    Ok(())
}
