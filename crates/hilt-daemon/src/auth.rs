//! Who is calling, and what they may do. A client sends
//! `authorization: Bearer <token>`; the config holds only each token's
//! SHA-256, a name and a role. The gate runs before every handler (hilt.v1,
//! health, reflection) and leaves the [`Caller`] in the request's
//! extensions; handlers then ask [`authorize`] for the role and device the
//! call needs. Neither a token nor its hash ever reaches a log line.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use tonic::Request;

use crate::Error;

/// What a token may do. Ordered: each role may do what the one before it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Discovery, describe, watch, health, reflection.
    Observer,
    /// Also leases, Execute and Stream on its devices.
    Operator,
    /// Everything: breaking another holder's lease, halting the daemon.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Observer => "observer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// One `[[server.token]]`, checked.
#[derive(Clone, PartialEq)]
pub struct Token {
    /// Shown in logs and the audit trail in place of the token.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// The devices it may lease and measure; `None`: all.
    pub devices: Option<BTreeSet<String>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// Whether hiltd may listen on `addr` with `server`'s settings: beyond
/// loopback only with TLS and at least one token, unless the operator said
/// `--insecure` (a warning at every start then).
pub fn check_exposure(
    addr: SocketAddr,
    server: &crate::config::ServerConfig,
    insecure: bool,
) -> Result<(), Error> {
    if addr.ip().is_loopback() || server.is_secured() {
        return Ok(());
    }
    let missing = match (server.tls.is_some(), server.tokens.is_empty()) {
        (false, true) => "no [server.tls] and no [[server.token]]",
        (false, false) => "no [server.tls]",
        _ => "no [[server.token]]",
    };
    if insecure {
        tracing::warn!(%addr, missing, "--insecure: anyone who can reach this address may \
            drive the rigs");
        return Ok(());
    }
    Err(Error::Config(format!(
        "refusing to listen on {addr} beyond loopback with {missing}: anyone on the network \
         could drive the rigs. Add a [server.tls] certificate and a [[server.token]] (hilt \
         token new), listen on 127.0.0.1, or pass --insecure on a network you trust"
    )))
}

/// Who made a request, as the gate established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (`anonymous` when the daemon has no tokens).
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
    /// The devices it may lease and measure; `None`: all.
    pub devices: Option<Arc<BTreeSet<String>>>,
    /// Where the call came from, for the audit trail.
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// `peer` as the audit trail writes it.
    pub fn peer(&self) -> String {
        self.peer.map_or_else(|| "-".into(), |p| p.to_string())
    }
}

/// The interceptor in front of every service.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Empty: no authentication (loopback, or `--insecure`); every caller
    /// is an anonymous admin, as anyone at the lab PC's keyboard is.
    tokens: Arc<[Token]>,
}

impl Gate {
    /// A gate that lets in the holders of `tokens` (everyone if empty).
    pub fn new(tokens: Vec<Token>) -> Self {
        Gate {
            tokens: tokens.into(),
        }
    }

    /// Establish the caller from the request's `authorization` header.
    fn identify<T>(&self, req: &Request<T>) -> Result<Caller, Error> {
        let peer = crate::conn::ConnInfo::of(req)
            .and_then(|c| c.peer())
            .or_else(|| req.remote_addr());
        if self.tokens.is_empty() {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
                devices: None,
                peer,
            });
        }
        let presented = match req.metadata().get("authorization") {
            None => return Err(Error::Unauthenticated(
                "no token: send `authorization: Bearer <token>` (hilt: --token-file or HILT_TOKEN)"
                    .into(),
            )),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    Error::Unauthenticated(
                        "the authorization header must be `Bearer <token>`".into(),
                    )
                })?,
        };
        let hash = hilt_core::token::sha256(presented.trim());
        // Compare with every token, whichever matches: the time taken says
        // nothing about how close a guess came, or which token it was.
        let mut found = None;
        for t in self.tokens.iter() {
            if bool::from(t.sha256.ct_eq(&hash)) {
                found = Some(t);
            }
        }
        let t = found.ok_or_else(|| Error::Unauthenticated("unknown token".into()))?;
        Ok(Caller {
            name: t.name.as_str().into(),
            role: t.role,
            devices: t.devices.clone().map(Arc::new),
            peer,
        })
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, tonic::Status> {
        // A call, allowed or not: the connection speaks gRPC.
        if let Some(c) = crate::conn::ConnInfo::of(&req) {
            c.called();
        }
        match self.identify(&req) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Ok(req)
            }
            Err(e) => {
                let peer = crate::conn::ConnInfo::of(&req)
                    .and_then(|c| c.peer())
                    .map_or_else(|| "-".into(), |p| p.to_string());
                tracing::warn!(target: "hilt::audit", event = "refused", token = "-",
                    %peer, reason = %e, "call refused");
                Err(e.into())
            }
        }
    }
}

/// The caller of `req`, if it may do what needs `role` (on `device`, if
/// the call is about one). A refusal is logged to the audit trail.
pub fn authorize<T>(
    req: &Request<T>,
    what: &'static str,
    role: Role,
    device: Option<&str>,
) -> Result<Caller, Error> {
    let caller = caller(req)?;
    caller.may(what, role, device)?;
    Ok(caller)
}

/// Who sent `req`, as the gate established it.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Error> {
    // Every service is behind the gate; a request without a caller has
    // bypassed it, and is refused rather than trusted.
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no caller established for this request".into()))
}

impl Caller {
    /// Whether this caller may do `what`, which needs `role` (on `device`).
    pub fn may(&self, what: &'static str, role: Role, device: Option<&str>) -> Result<(), Error> {
        let refused = if self.role < role {
            Some(format!(
                "{what} needs the {role} role; token '{}' is {}",
                self.name, self.role
            ))
        } else {
            match (device, &self.devices) {
                (Some(d), Some(allowed)) if !allowed.contains(d) => Some(format!(
                    "token '{}' may not use device '{}' (it may use: {})",
                    self.name,
                    crate::error::quote(d),
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                _ => None,
            }
        };
        match refused {
            None => Ok(()),
            Some(reason) => {
                tracing::warn!(target: "hilt::audit", event = "refused", call = what,
                    token = %self.name, peer = %self.peer(),
                    device = device.map(crate::error::quote).unwrap_or_default(),
                    %reason, "call refused");
                Err(Error::PermissionDenied(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(vec![
            Token {
                name: "alice".into(),
                role: Role::Operator,
                sha256: hilt_core::token::sha256("secret-a"),
                devices: Some(["shg0".to_string()].into()),
            },
            Token {
                name: "root".into(),
                role: Role::Admin,
                sha256: hilt_core::token::sha256("secret-r"),
                devices: None,
            },
        ])
    }

    fn with(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut().insert("authorization", t.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_map_to_their_names_and_roles() {
        let g = gate();
        let c = g.identify(&with(Some("Bearer secret-a"))).unwrap();
        assert_eq!((&*c.name, c.role), ("alice", Role::Operator));
        let c = g.identify(&with(Some("Bearer secret-r"))).unwrap();
        assert_eq!((&*c.name, c.role), ("root", Role::Admin));
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
        let g = gate();
        for r in [
            with(None),
            with(Some("secret-a")),
            with(Some("Bearer secret-b")),
            with(Some("Basic c2VjcmV0LWE=")),
        ] {
            let e = g.identify(&r).unwrap_err();
            assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn roles_and_device_lists_are_enforced() {
        let g = gate();
        let mut r = with(Some("Bearer secret-a"));
        let caller = g.identify(&r).unwrap();
        r.extensions_mut().insert(caller);
        assert!(authorize(&r, "Execute", Role::Operator, Some("shg0")).is_ok());
        let e = authorize(&r, "Execute", Role::Operator, Some("plate0")).unwrap_err();
        assert!(e.to_string().contains("may not use device 'plate0'"), "{e}");
        let e = authorize(&r, "Halt", Role::Admin, None).unwrap_err();
        assert!(e.to_string().contains("needs the admin role"), "{e}");
        // A request that never went through the gate is refused.
        assert!(authorize(&with(None), "ListDevices", Role::Observer, None).is_err());
    }

    #[test]
    fn without_tokens_everyone_is_an_anonymous_admin() {
        let c = Gate::new(vec![]).identify(&with(None)).unwrap();
        assert_eq!((&*c.name, c.role), ("anonymous", Role::Admin));
    }
}
