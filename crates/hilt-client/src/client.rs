use std::time::Duration;

use futures::{Stream, StreamExt};
use hilt_core::{DeviceEvent, DeviceSpec, DeviceStatus, Measurement, ServerInfo};
use hilt_proto::v1::{self, hilt_client::HiltClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::connect::{Bearer, ConnectOptions, RawClient};
use crate::{ClientError, Lease};

/// A connection to one hiltd. Cheap to clone (one HTTP/2 channel).
#[derive(Debug, Clone)]
pub struct Client {
    inner: RawClient,
}

impl Client {
    /// Connect to hiltd at `url` (`http://host:port` on the lab PC),
    /// giving up after 5 s; messages may be up to 256 MiB each way.
    pub async fn connect(url: impl Into<String>) -> Result<Self, ClientError> {
        Client::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connect with TLS (an `https://` URL) and a token.
    pub async fn connect_with(
        url: impl Into<String>,
        options: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let url = url.into();
        let bad = |message: String| ClientError::Status {
            code: tonic::Code::InvalidArgument,
            message,
        };
        let mut endpoint = Channel::from_shared(url.clone())
            .map_err(|e| bad(format!("server URL '{url}': {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let tls = url.starts_with("https://");
        if tls {
            let mut cfg = ClientTlsConfig::new();
            if let Some(ca) = &options.ca_pem {
                cfg = cfg.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &options.identity {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &options.domain {
                cfg = cfg.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(cfg)
                .map_err(|e| bad(format!("TLS settings for '{url}': {e}")))?;
        } else if options.ca_pem.is_some() || options.identity.is_some() {
            return Err(bad(format!(
                "a CA or client certificate was given but '{url}' is not https://"
            )));
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect { url, source })?;
        let bearer = Bearer::new(options.token.as_deref())?;
        Ok(Client {
            inner: HiltClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        })
    }

    /// The generated client (token included), for calls this wrapper does
    /// not cover.
    pub fn raw(&self) -> RawClient {
        self.inner.clone()
    }

    /// hiltd's version and what measures behind each device.
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        let r = self
            .raw()
            .get_server_info(v1::GetServerInfoRequest {})
            .await?
            .into_inner();
        Ok(ServerInfo::try_from(&r)?)
    }

    /// Every device the daemon serves, with its spec.
    pub async fn list_devices(&self) -> Result<Vec<DeviceSpec>, ClientError> {
        let r = self
            .raw()
            .list_devices(v1::ListDevicesRequest {})
            .await?
            .into_inner();
        r.devices
            .iter()
            .map(|d| DeviceSpec::try_from(d).map_err(ClientError::from))
            .collect()
    }

    /// One device's spec and its status now.
    pub async fn describe(&self, device: &str) -> Result<(DeviceSpec, DeviceStatus), ClientError> {
        let r = self
            .raw()
            .describe_device(v1::DescribeDeviceRequest {
                device_id: device.to_string(),
            })
            .await?
            .into_inner();
        let spec = r
            .spec
            .as_ref()
            .ok_or_else(|| hilt_proto::ConvertError::new("spec", "missing"))?;
        let status = r
            .status
            .as_ref()
            .ok_or_else(|| hilt_proto::ConvertError::new("status", "missing"))?;
        Ok((DeviceSpec::try_from(spec)?, DeviceStatus::try_from(status)?))
    }

    /// Admin: every device refuses new batches (`UNAVAILABLE "halted by
    /// <name>: <reason>"`) until [`Client::resume`]; batches in flight
    /// finish and serial boards are sent to their safe state.
    /// Answers the devices in their safe state and, for the others,
    /// why not (yet).
    pub async fn halt(&self, reason: &str) -> Result<(Vec<String>, Vec<String>), ClientError> {
        let r = self
            .raw()
            .halt(v1::HaltRequest {
                reason: reason.to_string(),
            })
            .await?
            .into_inner();
        Ok((r.safe, r.not_safe))
    }

    /// Admin: take work again after a halt.
    pub async fn resume(&self) -> Result<(), ClientError> {
        self.raw().resume(v1::ResumeRequest {}).await?;
        Ok(())
    }

    /// Admin: end whoever holds `device`'s lease (their next call is told
    /// by whom and why); whether anyone held it.
    pub async fn break_lease(&self, device: &str, reason: &str) -> Result<bool, ClientError> {
        let r = self
            .raw()
            .break_lease(v1::BreakLeaseRequest {
                device_id: device.to_string(),
                reason: reason.to_string(),
            })
            .await?
            .into_inner();
        Ok(r.broken)
    }

    /// Wait (FIFO) for the device and hold it, with a background keepalive
    /// every ttl/3 until the lease is released or dropped.
    pub async fn acquire(&self, device: &str, ttl: Duration) -> Result<Lease, ClientError> {
        Lease::acquire(self.raw(), device, ttl).await
    }

    /// Status changes of a device, starting with its current status.
    pub async fn watch(
        &self,
        device: &str,
    ) -> Result<impl Stream<Item = Result<DeviceEvent, ClientError>> + use<>, ClientError> {
        let s = self
            .raw()
            .watch_device(v1::WatchDeviceRequest {
                device_id: device.to_string(),
            })
            .await?
            .into_inner();
        Ok(s.map(|r| Ok(DeviceEvent::try_from(&r?)?)))
    }

    /// What `req.device_id` recorded, oldest first: each batch's sequence
    /// number and its measurement as Execute answered it.
    pub async fn read_recording(
        &self,
        req: v1::ReadRecordingRequest,
    ) -> Result<impl Stream<Item = Result<(u64, Measurement), ClientError>> + use<>, ClientError>
    {
        let s = self.raw().read_recording(req).await?.into_inner();
        Ok(s.map(|r| {
            let r = r?;
            let m = r
                .measurement
                .as_ref()
                .ok_or_else(|| hilt_proto::ConvertError::new("measurement", "missing"))?;
            Ok((r.seq, Measurement::try_from(m)?))
        }))
    }
}
