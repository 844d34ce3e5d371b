//! The daemons one run talks to. A device is named `ID` (on the run's
//! `--server`) or `ID@URL` (on the hiltd at URL), so a network's layers
//! can sit on rigs attached to different lab PCs. Throughout a run the
//! name as given is the device's key (its layers, twins, leases and
//! `metrics.json` use it), so two daemons may serve devices of the same
//! id; only the daemon sees the bare id.

use std::collections::{BTreeMap, HashMap};

use hilt_client::{Client, ConnectOptions};
use hilt_core::DeviceSpec;

use crate::error::{Error, Result};
use crate::rig::Rig;

/// `key` split into the device's id and, for `ID@URL`, the server's URL.
/// Only a `@` followed by `http://` or `https://` names a server, so ids
/// that contain `@` themselves stay whole.
pub fn split(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once('@') {
        Some((id, url))
            if !id.is_empty() && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            (id, Some(url))
        }
        _ => (key, None),
    }
}

/// One connection per daemon, made before the run starts, so a daemon
/// that cannot be reached stops the run before anything is leased.
#[derive(Debug, Clone)]
pub struct Fleet {
    default_url: String,
    clients: BTreeMap<String, Client>,
}

impl Fleet {
    /// Only the daemon of `--server`, already connected.
    pub fn single(client: Client, url: &str) -> Fleet {
        Fleet {
            default_url: url.to_string(),
            clients: BTreeMap::from([(url.to_string(), client)]),
        }
    }

    /// The daemon of `--server` and every daemon one of `keys` names,
    /// each connected with `options` (TLS files and token).
    pub async fn connect(
        default: Client,
        url: &str,
        keys: &[&str],
        options: &ConnectOptions,
    ) -> Result<Fleet> {
        let mut fleet = Fleet::single(default, url);
        for key in keys {
            if let (_, Some(server)) = split(key) {
                if fleet.clients.contains_key(server) {
                    continue;
                }
                let client =
                    Client::connect_with(server, options)
                        .await
                        .map_err(|e| Error::Server {
                            server: server.to_string(),
                            source: e,
                        })?;
                fleet.clients.insert(server.to_string(), client);
            }
        }
        Ok(fleet)
    }

    /// Every daemon of the run, `--server` first.
    pub fn servers(&self) -> Vec<String> {
        let mut out = vec![self.default_url.clone()];
        out.extend(
            self.clients
                .keys()
                .filter(|u| **u != self.default_url)
                .cloned(),
        );
        out
    }

    /// The daemon serving `key`, its URL, and the device's id there.
    fn resolve<'k>(&self, key: &'k str) -> Result<(&Client, &str, &'k str)> {
        let (id, server) = split(key);
        let url = server.unwrap_or(&self.default_url);
        let (url, client) = self
            .clients
            .get_key_value(url)
            .ok_or_else(|| Error::Device {
                device: key.to_string(),
                reason: format!("no connection to {url} (not named when the run started)"),
            })?;
        Ok((client, url, id))
    }

    /// `key` as its daemon describes it, under its key.
    pub async fn describe(&self, key: &str) -> Result<DeviceSpec> {
        let (client, url, id) = self.resolve(key)?;
        let (mut spec, _) = client.describe(id).await.map_err(|e| Error::Server {
            server: url.to_string(),
            source: e,
        })?;
        spec.id = key.to_string();
        Ok(spec)
    }

    /// Describe and lease `key` on its daemon.
    pub async fn rig(&self, key: &str) -> Result<Rig> {
        let (client, url, id) = self.resolve(key)?;
        let mut rig = Rig::open(client, id).await.map_err(|e| match e {
            Error::Client(source) => Error::Server {
                server: url.to_string(),
                source,
            },
            other => other,
        })?;
        rig.spec.id = key.to_string();
        rig.server = Some(url.to_string());
        Ok(rig)
    }

    /// Every one of `keys` leased, under its key.
    pub async fn rigs(&self, keys: &[String]) -> Result<HashMap<String, Rig>> {
        let mut rigs = HashMap::new();
        for key in keys {
            rigs.insert(key.clone(), self.rig(key).await?);
        }
        Ok(rigs)
    }

    /// Every device of `then` as it describes itself now, with a warning
    /// for each that changed since (calibration or settings): a network
    /// trained on it may no longer fit it.
    pub async fn describe_again(
        &self,
        then: &HashMap<String, DeviceSpec>,
    ) -> Result<HashMap<String, DeviceSpec>> {
        let mut now = HashMap::new();
        for (key, old) in then {
            let spec = self.describe(key).await?;
            if &spec != old {
                tracing::warn!(device = %key, "device description changed since training (calibration or settings)");
            }
            now.insert(key.clone(), spec);
        }
        Ok(now)
    }
}

/// `key` as a file name: a device on another daemon keeps its URL in its
/// key, whose `/` and `:` a file name cannot hold.
pub fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_named_only_by_a_url_after_the_last_at() {
        assert_eq!(split("shg-hidden"), ("shg-hidden", None));
        assert_eq!(
            split("shg-hidden@http://bench2:50051"),
            ("shg-hidden", Some("http://bench2:50051"))
        );
        assert_eq!(split("a@b@https://h:1"), ("a@b", Some("https://h:1")));
        // Not a URL: part of the id.
        assert_eq!(split("rig@lab"), ("rig@lab", None));
        assert_eq!(split("@http://h:1"), ("@http://h:1", None));
        assert_eq!(
            file_stem("shg@http://10.0.0.2:50051"),
            "shg_http___10.0.0.2_50051"
        );
    }
}
