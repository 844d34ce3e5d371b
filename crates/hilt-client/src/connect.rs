//! How a client reaches a daemon beyond the lab PC: TLS (the CA that signed
//! the daemon's certificate, a client certificate when the daemon asks for
//! one) and a token sent as `authorization: Bearer <token>` on every call.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::ClientError;

/// The generated client, with the token added to every call.
pub type RawClient = hilt_proto::v1::hilt_client::HiltClient<InterceptedService<Channel, Bearer>>;

/// TLS material and token for [`Client::connect_with`](crate::Client::connect_with).
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// PEM of the CA that signed the daemon's certificate (`https://` only;
    /// without it the system's roots are not consulted: a lab CA is the
    /// normal case).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key, for a daemon that requires client
    /// certificates (mTLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the daemon's certificate is for, when it differs from the
    /// URL's host (connecting by IP address to a certificate for a name).
    pub domain: Option<String>,
    /// The token, sent with every call; never shown by `Debug`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<pem>"))
            .field("domain", &self.domain)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Adds `authorization: Bearer <token>` to each call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    pub(crate) fn new(token: Option<&str>) -> Result<Self, ClientError> {
        let Some(token) = token else {
            return Ok(Bearer(None));
        };
        let token = token.trim();
        let mut v: MetadataValue<Ascii> =
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Status {
                    code: tonic::Code::InvalidArgument,
                    message: "token: must be printable ASCII (as `hilt token new` makes them)"
                        .into(),
                })?;
        // Kept out of HTTP/2 header compression tables and debug output.
        v.set_sensitive(true);
        Ok(Bearer(Some(v)))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}
