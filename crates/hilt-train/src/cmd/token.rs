//! `hilt token new`: a fresh random token for hiltd, and the
//! `[[server.token]]` block that lets it in. hiltd keeps only the token's
//! SHA-256, so the token itself is shown once, here.

use std::fmt::Write as _;

use hilt_train::Result;
use rand::RngCore;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Print a new token and the config block for hiltd.
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Who holds it: shown in hiltd's logs and audit trail.
    #[arg(long)]
    name: String,
    /// observer (look), operator (lease and measure) or admin (also break
    /// leases, halt).
    #[arg(long, value_parser = ["observer", "operator", "admin"])]
    role: String,
    /// Only these devices may be leased and measured [default: all].
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
}

pub fn run(c: Cmd) -> Result<()> {
    let Cmd::New(a) = c;
    if !hilt_core::token::is_valid_name(&a.name) {
        return Err(hilt_train::Error::invalid(format!(
            "--name: {}",
            hilt_core::token::NAME_RULE
        )));
    }
    // 256 bits from the thread's CSPRNG (ChaCha, seeded by the OS).
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("hilt_{}", hex::encode(bytes));
    let hash = hex::encode(hilt_core::token::sha256(&token));
    let mut block = format!(
        "[[server.token]]\nname = \"{}\"\nrole = \"{}\"\nsha256 = \"{hash}\"\n",
        a.name, a.role
    );
    if !a.devices.is_empty() {
        let list: Vec<String> = a.devices.iter().map(|d| format!("{d:?}")).collect();
        let _ = writeln!(block, "devices = [{}]", list.join(", "));
    }
    println!("token (give it to {}; it is not stored anywhere):", a.name);
    println!("{token}");
    println!();
    println!("add to hiltd's config:");
    print!("{block}");
    Ok(())
}
