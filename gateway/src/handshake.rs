//! The `connect` pipeline (reference §2.5), as a pure function of the request, the challenge
//! nonce, where the socket comes from, and the gateway's state:
//!
//! 1. protocol range;
//! 2. role;
//! 3. shared secret;
//! 4. device proof (id, freshness, nonce, signature v3 then v2);
//! 5. device token, when the shared secret did not authenticate;
//! 6. scopes;
//! 7. pairing (silent only for this very host: a direct loopback socket, or a socket from the
//!    host's own tailnet address; or with a valid setup code);
//! 8. device token issue.

use std::net::IpAddr;

use pincer_protocol::connect::{ClientId, ClientMode, ConnectParams, PresenceEntry};
use pincer_protocol::error::{code, detail, ErrorShape};
use pincer_protocol::identity::{signature_token, PublicKey, SignedFields};
use pincer_protocol::scopes::{self, Role};
use pincer_protocol::{close, version};
use serde_json::json;

use crate::auth::{self, AuthMethod};
use crate::devices::{BootstrapCheck, PairedDevice, PendingRequest, TokenCheck};
use crate::hub::Hub;

/// Allowed clock difference between `device.signedAt` and the gateway.
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// Where a socket comes from, as seen at the HTTP upgrade.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The socket's remote address.
    pub ip: IpAddr,
    /// The client's address: `ip`, or what a trusted proxy says in `X-Forwarded-For` /
    /// `X-Real-IP`.
    pub client_ip: IpAddr,
    /// Any of `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Real-IP`,
    /// `X-Forwarded-Host` was present.
    pub forwarded: bool,
    /// The `Host` header names this machine (or is absent).
    pub host_is_local: bool,
}

/// How near a client is, for silent pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// Loopback socket, no forwarding headers, local `Host`.
    DirectLocal,
    /// A socket from this host's own tailnet address (no proxy in between).
    TailnetSelf,
    /// Everything else: LAN, other tailnet hosts, anything behind a proxy.
    Remote,
}

impl Peer {
    /// A peer seen directly on `ip` with no headers (tests, internal use).
    pub fn direct(ip: IpAddr) -> Peer {
        Peer {
            ip,
            client_ip: ip,
            forwarded: false,
            host_is_local: true,
        }
    }

    /// A direct loopback socket.
    pub fn is_direct_local(&self) -> bool {
        self.locality() == Locality::DirectLocal
    }

    pub fn locality(&self) -> Locality {
        if self.forwarded {
            return Locality::Remote;
        }
        if self.ip.is_loopback() && self.host_is_local {
            return Locality::DirectLocal;
        }
        if crate::config::is_tailnet(self.ip) && is_own_address(self.ip) {
            return Locality::TailnetSelf;
        }
        Locality::Remote
    }
}

/// Whether `ip` is configured on one of this host's interfaces (a bind to it succeeds).
pub fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// A successful handshake.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub protocol: u32,
    pub role: Role,
    pub scopes: Vec<String>,
    pub method: AuthMethod,
    pub device_id: Option<String>,
    /// A freshly minted device token and when it was issued.
    pub device_token: Option<(String, u64)>,
}

/// A refused handshake: the error response, then the close.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub error: Box<ErrorShape>,
    pub close_code: u16,
    pub close_reason: String,
    /// Counts toward the per-IP auth failure limit.
    pub auth_failure: bool,
}

impl Rejected {
    /// Refused with `error`, then closed with `close_code` / `reason`.
    pub fn new(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
        reject(error, close_code, reason)
    }

    /// Refused for a server-side failure (as a device store error is).
    pub fn unavailable(message: String) -> Rejected {
        tracing::error!(%message, "connect refused");
        reject(
            ErrorShape::unavailable(message),
            close::POLICY_VIOLATION,
            "device store error",
        )
    }

    fn auth(mut self) -> Self {
        self.auth_failure = true;
        self
    }
}

fn reject(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
    Rejected {
        error: Box::new(error),
        close_code,
        close_reason: close::truncate_reason(reason).to_owned(),
        auth_failure: false,
    }
}

fn auth_reject(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
    reject(error, close_code, reason).auth()
}

fn store_error(e: crate::devices::DeviceStoreError) -> Rejected {
    tracing::error!(error = %e, "device store");
    reject(
        ErrorShape::unavailable(e.to_string()),
        close::POLICY_VIOLATION,
        "device store error",
    )
}

fn device_failure(detail_code: &str, reason: &str, message: &str) -> Rejected {
    auth_reject(
        ErrorShape::invalid(message).with_details(json!({ "code": detail_code, "reason": reason })),
        close::POLICY_VIOLATION,
        message,
    )
}

/// Device-less operators keep their scopes only when they are trusted local helpers.
fn keeps_scopes_without_device(p: &ConnectParams, peer: &Peer, method: AuthMethod) -> bool {
    let helper = matches!(
        (p.client.id, p.client.mode),
        (ClientId::Cli, _) | (ClientId::GatewayClient, ClientMode::Backend)
    );
    helper
        && peer.is_direct_local()
        && matches!(
            method,
            AuthMethod::Token | AuthMethod::Password | AuthMethod::None
        )
}

fn normalize_scopes(requested: &[String]) -> Vec<String> {
    let mut v: Vec<String> = requested
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    v.dedup();
    v
}

/// Runs the pipeline.
pub fn handshake(
    hub: &Hub,
    p: &ConnectParams,
    nonce: &str,
    peer: &Peer,
    now_ms: u64,
) -> Result<Accepted, Rejected> {
    // 1. Protocol range.
    let Some(protocol) = version::negotiate(p.min_protocol.0, p.max_protocol.0) else {
        let e = ErrorShape::invalid("protocol mismatch").with_details(json!({
            "code": detail::PROTOCOL_MISMATCH,
            "clientMinProtocol": p.min_protocol.0,
            "clientMaxProtocol": p.max_protocol.0,
            "expectedProtocol": version::MAX_PROTOCOL,
            "minimumProbeProtocol": version::MIN_PROTOCOL,
        }));
        return Err(reject(
            e,
            close::PROTOCOL_ERROR,
            close::reason::PROTOCOL_MISMATCH,
        ));
    };

    // 2. Role.
    let Some(role) = Role::parse(p.role()) else {
        return Err(reject(
            ErrorShape::invalid("invalid role"),
            close::POLICY_VIOLATION,
            close::reason::INVALID_ROLE,
        ));
    };

    // 3. Shared secret.
    let a = p.auth.clone().unwrap_or_default();
    let shared = auth::check_shared(&hub.config.auth, a.token.as_deref(), a.password.as_deref());

    // 4. Device proof.
    let device = match &p.device {
        None => None,
        Some(d) => {
            let pk = PublicKey::from_base64url(&d.public_key).map_err(|_| {
                device_failure(
                    detail::DEVICE_AUTH_PUBLIC_KEY_INVALID,
                    "device-public-key",
                    "device public key invalid",
                )
            })?;
            let derived = pk.device_id().to_hex();
            if !derived.eq_ignore_ascii_case(d.id.trim()) {
                return Err(device_failure(
                    detail::DEVICE_AUTH_DEVICE_ID_MISMATCH,
                    "device-id-mismatch",
                    "device identity mismatch",
                ));
            }
            if now_ms.abs_diff(d.signed_at) > SIGNATURE_SKEW_MS {
                return Err(device_failure(
                    detail::DEVICE_AUTH_SIGNATURE_EXPIRED,
                    "device-signature-stale",
                    "device signature expired",
                ));
            }
            if d.nonce.trim() != nonce {
                return Err(device_failure(
                    detail::DEVICE_AUTH_NONCE_MISMATCH,
                    "device-nonce-mismatch",
                    "device nonce mismatch",
                ));
            }
            let fields = SignedFields {
                device_id: &d.id,
                client_id: p.client.id.as_str(),
                client_mode: p.client.mode.as_str(),
                role: role.as_str(),
                scopes: p.scopes(),
                signed_at_ms: d.signed_at,
                token: signature_token(
                    a.token.as_deref(),
                    a.device_token.as_deref(),
                    a.bootstrap_token.as_deref(),
                ),
                nonce: &d.nonce,
                platform: &p.client.platform,
                device_family: p.client.device_family.as_deref().unwrap_or(""),
            };
            if fields.verify(&pk, &d.signature).is_err() {
                return Err(device_failure(
                    detail::DEVICE_AUTH_SIGNATURE_INVALID,
                    "device-signature",
                    "device signature invalid",
                ));
            }
            Some((
                derived.as_str().to_owned(),
                pk.to_base64url().as_str().to_owned(),
            ))
        }
    };

    // 5. A setup code (bootstrap token) wins when valid; otherwise, when the shared secret did
    // not authenticate, the device token.
    let requested = normalize_scopes(p.scopes());
    let mut bootstrap_scopes: Option<Vec<String>> = None;
    let bootstrap = match (
        &device,
        a.bootstrap_token.as_deref().filter(|t| !t.is_empty()),
    ) {
        (Some((id, pk)), Some(bt)) => match hub
            .devices
            .redeem_bootstrap(bt, id, pk, role.as_str(), now_ms)
            .map_err(store_error)?
        {
            BootstrapCheck::Valid { scopes, .. } => {
                bootstrap_scopes = Some(scopes);
                true
            }
            BootstrapCheck::Invalid(why) => {
                let e =
                    ErrorShape::invalid(format!("unauthorized: bootstrap token invalid ({why})"))
                        .with_details(json!({
                            "code": detail::AUTH_BOOTSTRAP_TOKEN_INVALID,
                            "authReason": "bootstrap_token_invalid",
                            "canRetryWithDeviceToken": false,
                            "recommendedNextStep": "update_auth_credentials",
                        }));
                return Err(auth_reject(
                    e,
                    close::POLICY_VIOLATION,
                    "unauthorized: bootstrap token invalid",
                ));
            }
        },
        _ => false,
    };
    let (method, token_scopes) = match (bootstrap, shared, &device) {
        (true, _, _) => (AuthMethod::Bootstrap, None),
        (false, Ok(m), _) => (m, None),
        (false, Err(f), Some((id, pk))) => {
            let explicit = a.device_token.as_deref();
            let candidate = explicit.or(a.token.as_deref()).filter(|t| !t.is_empty());
            let check = match candidate {
                Some(t) => hub
                    .devices
                    .verify_token(id, pk, role.as_str(), t)
                    .map_err(store_error)?,
                None => TokenCheck::Unknown,
            };
            match check {
                TokenCheck::Valid(s) => (AuthMethod::DeviceToken, Some(s)),
                TokenCheck::Mismatch if explicit.is_some() => {
                    let (e, r) = auth::device_token_mismatch();
                    return Err(auth_reject(e, close::POLICY_VIOLATION, r));
                }
                _ => {
                    let (e, r) = auth::failure_error(f, false);
                    return Err(auth_reject(e, close::POLICY_VIOLATION, r));
                }
            }
        }
        (false, Err(f), None) => {
            let (e, r) = auth::failure_error(f, false);
            return Err(auth_reject(e, close::POLICY_VIOLATION, r));
        }
    };

    // 6. Scopes.
    let granted: Vec<String> = match role {
        Role::Node => Vec::new(),
        // A setup code grants at most its profile's scopes.
        Role::Operator if bootstrap => {
            let profile = bootstrap_scopes.clone().unwrap_or_default();
            requested
                .iter()
                .filter(|s| scopes::satisfies(&profile, s))
                .cloned()
                .collect()
        }
        Role::Operator if device.is_none() => {
            if keeps_scopes_without_device(p, peer, method) {
                requested.clone()
            } else {
                Vec::new()
            }
        }
        Role::Operator => match &token_scopes {
            Some(held) => {
                if let Some(missing) = requested.iter().find(|s| !scopes::satisfies(held, s)) {
                    let e = ErrorShape::invalid(format!("unauthorized: device token does not cover scope {missing}"))
                        .with_details(json!({ "code": detail::AUTH_SCOPE_MISMATCH, "authReason": "scope_mismatch" }));
                    return Err(reject(
                        e,
                        close::POLICY_VIOLATION,
                        "unauthorized: device token scope mismatch",
                    ));
                }
                requested.clone()
            }
            None => requested.clone(),
        },
    };

    // Nodes must bring a device identity.
    let Some((device_id, public_key)) = device else {
        if role == Role::Node {
            let e = ErrorShape::new(code::NOT_PAIRED, "device identity required")
                .with_details(json!({ "code": detail::DEVICE_IDENTITY_REQUIRED }));
            return Err(reject(
                e,
                close::POLICY_VIOLATION,
                close::reason::DEVICE_IDENTITY_REQUIRED,
            ));
        }
        return Ok(Accepted {
            protocol,
            role,
            scopes: granted,
            method,
            device_id: None,
            device_token: None,
        });
    };

    // 7. Pairing.
    let existing = hub
        .devices
        .get(&device_id)
        .filter(|d| d.public_key == public_key);
    let reason = match &existing {
        None => Some("not-paired"),
        Some(d) if !d.roles.iter().any(|r| r == role.as_str()) => Some("role-upgrade"),
        Some(d) if granted.iter().any(|s| !scopes::satisfies(&d.scopes, s)) => {
            Some("scope-upgrade")
        }
        Some(_) => None,
    };
    if let Some(reason) = reason {
        // Silent approval only for this very host, and only when the shared secret or a setup
        // code authenticated (a device token never widens its own grant).
        let local = peer.locality() != Locality::Remote;
        let silent = (local && method != AuthMethod::DeviceToken)
            || (bootstrap && reason != "scope-upgrade");
        if !silent {
            let req = PendingRequest {
                request_id: crate::secret::uuid_v4(),
                device_id: device_id.clone(),
                public_key: public_key.clone(),
                display_name: p.client.display_name.as_ref().map(|s| s.to_string()),
                platform: Some(p.client.platform.to_string()),
                device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
                client_id: Some(p.client.id.as_str().into()),
                client_mode: Some(p.client.mode.as_str().into()),
                role: role.as_str().into(),
                roles: vec![role.as_str().into()],
                scopes: granted.clone(),
                remote_ip: Some(peer.client_ip.to_string()),
                silent: false,
                is_repair: existing.is_some(),
                ts: now_ms,
            };
            let r = hub.devices.request(req, now_ms).map_err(store_error)?;
            let request_id = r.request.request_id.clone();
            if r.created {
                tracing::warn!(
                    %device_id, reason, %request_id, ip = %peer.client_ip, role = role.as_str(),
                    "pairing required: approve with `pincer-gateway devices approve {}` (or `openclaw devices approve {}`)",
                    r.request.short_code(), request_id
                );
                hub.pairing_event(
                    "device.pair.requested",
                    &serde_json::to_value(&r.request).unwrap_or_default(),
                );
            }
            let e = ErrorShape::new(code::NOT_PAIRED, "pairing required").with_details(json!({
                "code": detail::PAIRING_REQUIRED,
                "requestId": request_id,
                "reason": reason,
            }));
            return Err(reject(
                e,
                close::POLICY_VIOLATION,
                close::reason::PAIRING_REQUIRED,
            ));
        }
        let record = PairedDevice {
            device_id: device_id.clone(),
            public_key: public_key.clone(),
            display_name: p.client.display_name.as_ref().map(|s| s.to_string()),
            platform: Some(p.client.platform.to_string()),
            device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
            client_id: Some(p.client.id.as_str().into()),
            client_mode: Some(p.client.mode.as_str().into()),
            roles: vec![],
            scopes: vec![],
            created_at_ms: now_ms,
            approved_at_ms: now_ms,
            tokens: Default::default(),
        };
        hub.devices
            .approve(record, role.as_str(), &granted)
            .map_err(store_error)?;
        tracing::info!(%device_id, reason, role = role.as_str(), locality = ?peer.locality(), bootstrap, "device paired silently");
    }

    // 8. Device token: minted when the client authenticated with the shared secret; a client
    // that used its device token already holds one.
    let device_token = if method == AuthMethod::DeviceToken {
        None
    } else {
        hub.devices
            .issue_token(&device_id, role.as_str(), &granted, now_ms)
            .map_err(store_error)?
            .map(|t| (t, now_ms))
    };
    Ok(Accepted {
        protocol,
        role,
        scopes: granted,
        method,
        device_id: Some(device_id),
        device_token,
    })
}

/// The presence entry of a connection, or `None` for clients that are not tracked
/// (`client.mode: "cli"` and probes).
pub fn presence_entry(
    p: &ConnectParams,
    a: &Accepted,
    peer: &Peer,
    conn_id: &str,
    now_ms: u64,
) -> Option<(String, PresenceEntry)> {
    if matches!(p.client.mode, ClientMode::Cli | ClientMode::Probe) {
        return None;
    }
    let key = a
        .device_id
        .clone()
        .or_else(|| p.client.instance_id.as_ref().map(|s| s.to_string()))
        .unwrap_or_else(|| conn_id.to_owned());
    let name = p.client.display_name.as_ref().map(|s| s.to_string());
    let entry = PresenceEntry {
        host: name.clone(),
        ip: Some(peer.client_ip.to_string()),
        version: Some(p.client.version.to_string()),
        platform: Some(p.client.platform.to_string()),
        device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
        model_identifier: p.client.model_identifier.as_ref().map(|s| s.to_string()),
        mode: Some(p.client.mode.as_str().into()),
        reason: Some("connect".into()),
        text: Some(format!(
            "{}: {} · {} · mode {}",
            if a.role == Role::Node {
                "Node"
            } else {
                "Client"
            },
            name.as_deref().unwrap_or(p.client.id.as_str()),
            p.client.version,
            p.client.mode.as_str()
        )),
        ts: now_ms,
        device_id: a.device_id.clone(),
        roles: Some(vec![a.role.as_str().into()]),
        scopes: Some(a.scopes.clone()),
        instance_id: p.client.instance_id.as_ref().map(|s| s.to_string()),
        ..Default::default()
    };
    Some((key, entry))
}
