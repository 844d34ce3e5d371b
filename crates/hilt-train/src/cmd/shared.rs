//! The arguments several commands share, and the global flags.

use std::path::PathBuf;

use hilt_client::{Client, ConnectOptions};
use hilt_train::data::{self, Task};
use hilt_train::twin::{FitOptions, TwinKind};
use hilt_train::{Error, Result};

const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Flags every command takes, resolved once when the command line is parsed.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// hiltd to talk to [default: http://127.0.0.1:50051; `hilt demo`
    /// embeds its own daemon unless this is given].
    #[arg(long, global = true, env = "HILT_SERVER")]
    server: Option<String>,
    /// PEM of the CA that signed hiltd's certificate (for https:// servers).
    #[arg(long, global = true, env = "HILT_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM client certificate, for a hiltd that requires one (mTLS).
    #[arg(
        long,
        global = true,
        env = "HILT_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "HILT_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// File holding the token to send (`hilt token new` makes one); the
    /// environment variable HILT_TOKEN may hold the token itself instead.
    #[arg(long, global = true, env = "HILT_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

impl Global {
    /// The daemon's address, given or default.
    pub fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }

    /// The daemon's address only if the user named one (`hilt demo`
    /// embeds its own otherwise).
    pub fn given_server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    pub async fn connect(&self) -> Result<Client> {
        Ok(Client::connect_with(self.server(), &self.connect_options()?).await?)
    }

    /// TLS files and token as the flags and environment give them, read.
    pub fn connect_options(&self) -> Result<ConnectOptions> {
        let read = |flag: &str, p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| Error::invalid(format!("{flag} {}: cannot read: {e}", p.display())))
        };
        let token = match (&self.token_file, std::env::var("HILT_TOKEN")) {
            (Some(p), _) => {
                let text = String::from_utf8(read("--token-file", p)?).map_err(|_| {
                    Error::invalid(format!("--token-file {}: not text", p.display()))
                })?;
                let t = text.trim().to_string();
                if t.is_empty() {
                    return Err(Error::invalid(format!(
                        "--token-file {}: the file is empty",
                        p.display()
                    )));
                }
                Some(t)
            }
            (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => None,
        };
        Ok(ConnectOptions {
            ca_pem: self.ca.as_ref().map(|p| read("--ca", p)).transpose()?,
            identity: match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some((read("--client-cert", c)?, read("--client-key", k)?)),
                _ => None,
            },
            domain: None,
            token,
        })
    }
}

/// How a twin is fitted, for `hilt twin fit` and for the twins `hilt train`
/// and `hilt demo` fit themselves.
#[derive(Debug, clap::Args, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitArgs {
    /// Twin form [default: waveform for devices driven by a held waveform
    /// (plate, circuit), mlp otherwise].
    #[arg(long, value_enum)]
    twin_kind: Option<TwinKind>,
    /// Hidden layer widths of the twin MLP.
    #[arg(long, value_delimiter = ',', default_value = "256,256,256")]
    twin_hidden: Vec<usize>,
    /// [default: 120 for an MLP, 30 for a waveform twin]
    #[arg(long)]
    twin_epochs: Option<usize>,
    /// [default: 0.002 for an MLP, 0.01 for a waveform twin]
    #[arg(long)]
    twin_lr: Option<f64>,
}

impl FitArgs {
    pub fn options(&self, seed: u64, quiet: bool) -> FitOptions {
        FitOptions {
            kind: self.twin_kind,
            hidden: self.twin_hidden.clone(),
            epochs: self.twin_epochs,
            lr: self.twin_lr,
            seed,
            quiet,
            ..FitOptions::default()
        }
    }
}

/// Which data set, and how much of it.
#[derive(Debug, clap::Args, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataArgs {
    /// Directory of the data set [default: per task; the vowels are built
    /// into hilt].
    #[arg(long, env = "HILT_DATA")]
    pub data: Option<PathBuf>,
    /// Use at most this many training examples (seeded subsample).
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Use at most this many test examples (seeded subsample).
    #[arg(long)]
    pub max_test: Option<usize>,
    /// Mean-pool images to this side (14: the 196 inputs of the plate and
    /// circuit networks) [default: the images' own].
    #[arg(long)]
    pub image_side: Option<usize>,
}

impl DataArgs {
    pub fn load(&self, task: Task) -> Result<data::Dataset> {
        let mut d = data::load_from(task, self.data.as_deref())?;
        if let Some(side) = self.image_side {
            d.pool_images(side)?;
        }
        d.truncate(self.max_train, self.max_test);
        Ok(d)
    }
}
