use std::time::Duration;

use hilt_core::{Batch, Measurement};
use hilt_proto::v1;
use tokio::task::JoinHandle;

use crate::connect::RawClient;
use crate::{BatchStream, ClientError};

/// A held device. Dropping it stops the keepalive and releases the lease
/// in the background; `release` does so and reports errors.
#[derive(Debug)]
pub struct Lease {
    client: RawClient,
    id: String,
    device: String,
    ttl: Duration,
    keepalive: Option<JoinHandle<()>>,
}

impl Lease {
    pub(crate) async fn acquire(
        mut client: RawClient,
        device: &str,
        ttl: Duration,
    ) -> Result<Self, ClientError> {
        let l = client
            .acquire_lease(v1::AcquireLeaseRequest {
                device_id: device.to_string(),
                ttl_seconds: ttl.as_secs_f64(),
                wait_seconds: 0.0,
            })
            .await?
            .into_inner();
        // The server's number: a TTL that is no duration is a bad answer,
        // not a panic.
        let ttl = Duration::try_from_secs_f64(l.ttl_seconds).map_err(|_| {
            hilt_proto::ConvertError::new(
                "ttl_seconds",
                format!("{} is not a duration", l.ttl_seconds),
            )
        })?;
        let keepalive = {
            let mut c = client.clone();
            let id = l.lease_id.clone();
            tokio::spawn(async move {
                // A third of the TTL, but never a zero period (which
                // `interval` refuses): a lease of nanoseconds is kept
                // alive as often as is sane, not a panic.
                let period = (ttl / 3).max(std::time::Duration::from_millis(1));
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(s) = c
                        .keep_alive(v1::KeepAliveRequest {
                            lease_id: id.clone(),
                        })
                        .await
                    {
                        // Lost for good (expired, released): further calls
                        // will say so with FAILED_PRECONDITION.
                        if s.code() == tonic::Code::FailedPrecondition {
                            tracing::warn!(lease = %id, "lease lost: {}", s.message());
                            return;
                        }
                    }
                }
            })
        };
        Ok(Lease {
            client,
            id: l.lease_id,
            device: l.device_id,
            ttl,
            keepalive: Some(keepalive),
        })
    }

    /// The lease id; a secret that authorises `execute` and `stream`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The leased device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The TTL hiltd granted (its default when 0 was asked); the
    /// keepalive runs every third of it.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Measure one batch and wait for it. Errors from validation (shapes,
    /// limits) come back as [`ClientError::Status`].
    pub async fn execute(&self, batch: &Batch) -> Result<Measurement, ClientError> {
        let m = self
            .client
            .clone()
            .execute(v1::ExecuteRequest {
                device_id: self.device.clone(),
                lease_id: self.id.clone(),
                batch: Some(batch.into()),
            })
            .await?
            .into_inner();
        Ok(Measurement::try_from(&m)?)
    }

    /// Open a pipelined stream with at most `window` batches in flight.
    pub async fn stream(&self, window: u32) -> Result<BatchStream, ClientError> {
        BatchStream::open(self.client.clone(), &self.device, &self.id, window).await
    }

    /// Stop the keepalive and free the device now, reporting whether the
    /// daemon accepted.
    pub async fn release(mut self) -> Result<(), ClientError> {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        let id = std::mem::take(&mut self.id);
        self.client
            .release_lease(v1::ReleaseLeaseRequest { lease_id: id })
            .await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        if self.id.is_empty() {
            return;
        }
        // Best effort: if the runtime is gone, the TTL frees the device.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut c = self.client.clone();
            let lease_id = std::mem::take(&mut self.id);
            rt.spawn(async move {
                let _ = c.release_lease(v1::ReleaseLeaseRequest { lease_id }).await;
            });
        }
    }
}
