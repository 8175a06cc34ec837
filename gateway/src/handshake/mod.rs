//! The `connect` pipeline (reference §2.5), as a pure function of the request, the challenge
//! nonce, where the socket comes from, and the gateway's state:
//!
//! 1. protocol range;
//! 2. role, then a browser's `Origin` — `origin`;
//! 3. shared secret;
//! 4. device proof (id, freshness, nonce, signature v3 then v2) — `proof`;
//! 5. device token, when the shared secret did not authenticate — `credentials`;
//! 6. scopes — `grant`;
//! 7. pairing (silent only for this very host: a direct loopback socket, or a socket from the
//!    host's own tailnet address; or with a valid setup code) — `pair`;
//! 8. device token issue.
//!
//! This module owns the pipeline's order ([`handshake`]) and its outcome ([`Accepted`]);
//! each step that takes more than a few lines is a submodule. [`Peer`] (where the socket
//! comes from) is in `peer`, [`Rejected`] and its constructors in `rejected`.

mod credentials;
mod grant;
mod origin;
mod pair;
mod peer;
mod proof;
mod rejected;

use pincer_protocol::close;
use pincer_protocol::connect::{ClientMode, ConnectParams, PresenceEntry};
use pincer_protocol::error::{code, detail, ErrorShape};
use pincer_protocol::scopes::Role;
use pincer_protocol::version;
use serde_json::json;

use crate::auth::{self, AuthMethod};
use crate::hub::Hub;
use rejected::{reject, store_error};

pub use peer::{is_own_address, Locality, Peer};
pub use proof::SIGNATURE_SKEW_MS;
pub use rejected::Rejected;

/// A successful handshake.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The negotiated protocol version.
    pub protocol: u32,
    /// The role granted.
    pub role: Role,
    /// The scopes granted (none for nodes; dropped for device-less clients not trusted locally).
    pub scopes: Vec<String>,
    /// How the client authenticated (`hello-ok.auth.method`).
    pub method: AuthMethod,
    /// The proven device id; `None` for device-less operators.
    pub device_id: Option<String>,
    /// A freshly minted device token and when it was issued.
    pub device_token: Option<(String, u64)>,
}

/// What every step may look at: the request, the challenge nonce, where the socket comes
/// from, the gateway's state, and the time.
struct Inputs<'a> {
    hub: &'a Hub,
    p: &'a ConnectParams,
    nonce: &'a str,
    peer: &'a Peer,
    now_ms: u64,
}

/// Runs the pipeline.
pub fn handshake(
    hub: &Hub,
    p: &ConnectParams,
    nonce: &str,
    peer: &Peer,
    now_ms: u64,
) -> Result<Accepted, Rejected> {
    let cx = Inputs {
        hub,
        p,
        nonce,
        peer,
        now_ms,
    };
    // 1. Protocol range.
    let protocol = negotiate_protocol(p)?;

    // 2. Role.
    let Some(role) = Role::parse(p.role()) else {
        return Err(reject(
            ErrorShape::invalid("invalid role"),
            close::POLICY_VIOLATION,
            close::reason::INVALID_ROLE,
        ));
    };
    origin::check(peer, &hub.config.control_ui.allowed_origins)?;

    // 3. Shared secret.
    let a = p.auth.clone().unwrap_or_default();
    // Not even compared while remote failures fill the window: guesses spread over many
    // addresses learn nothing (a paired device still gets in with its device token, step 5).
    let paused = match hub.config.auth {
        crate::config::AuthMode::None => None,
        _ => hub.lockout.guessing_paused(peer.client_ip, now_ms),
    };
    let shared = match paused {
        Some(wait) => Err(auth::SharedFailure::GuessingPaused(wait)),
        None => tailscale_or_shared(cx.hub, peer, &a)?,
    };

    // 4. Device proof.
    let device = proof::verify(&cx, role, &a)?;

    // 5. A setup code (bootstrap token) wins when valid; otherwise, when the shared secret did
    // not authenticate, the device token.
    let creds = credentials::authenticate(&cx, role, &a, shared, device.as_ref())?;
    let method = creds.method;

    // 6. Scopes.
    let granted = grant::grant(&cx, role, &creds, device.is_some())?;

    // Nodes must bring a device identity.
    let Some(device) = device else {
        // Nodes, and clients signed in by a Tailscale login (a login is a person, not a
        // device: the reference pairs the device all the same).
        if role == Role::Node || method == AuthMethod::Tailscale {
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
    pair::pair(&cx, role, &creds, &device, &granted)?;

    // 8. Device token: minted when the client authenticated with the shared secret; a client
    // that used its device token already holds one.
    let device_token = if method == AuthMethod::DeviceToken {
        None
    } else {
        hub.devices
            .issue_token(&device.id, role.as_str(), &granted, now_ms)
            .map_err(store_error)?
            .map(|t| (t, now_ms))
    };
    Ok(Accepted {
        protocol,
        role,
        scopes: granted,
        method,
        device_id: Some(device.id),
        device_token,
    })
}

/// Step 3: the shared secret, or instead of it Tailscale Serve's confirmed login (reference:
/// only without a token or password sent, only on the gateway's own Serve listener, never
/// in auth mode `none`). Tailscale headers from anywhere else refuse the connection, even
/// with the right secret: a process on this host could have written them.
fn tailscale_or_shared(
    hub: &Hub,
    peer: &Peer,
    a: &pincer_protocol::connect::ConnectAuth,
) -> Result<Result<AuthMethod, auth::SharedFailure>, Rejected> {
    use crate::tailscale::ingress::{Refusal, ServeIdentity};
    let sent = |v: &Option<String>| v.as_deref().is_some_and(|t| !t.is_empty());
    let explicit = sent(&a.token) || sent(&a.password);
    let shared = || auth::check_shared(&hub.config.auth, a.token.as_deref(), a.password.as_deref());
    let ts = match &peer.tailscale {
        Some(ServeIdentity::Refused(Refusal::ProxyMissing)) => {
            let (e, r) =
                auth::failure_error(auth::SharedFailure::Tailscale(Refusal::ProxyMissing), false);
            return Err(rejected::auth_reject(e, close::POLICY_VIOLATION, r));
        }
        Some(id) if hub.config.allow_tailscale && !explicit => id,
        _ => return Ok(shared()),
    };
    if matches!(hub.config.auth, crate::config::AuthMode::None) {
        return Ok(shared());
    }
    Ok(match ts {
        ServeIdentity::Verified { login, .. } => {
            tracing::info!(%login, ip = %peer.client_ip, "signed in by Tailscale Serve identity");
            Ok(AuthMethod::Tailscale)
        }
        ServeIdentity::Refused(r) => {
            tracing::warn!(ip = %peer.client_ip, refusal = ?r, "Tailscale Serve identity not confirmed");
            Err(auth::SharedFailure::Tailscale(*r))
        }
    })
}

/// Step 1: the protocol version both sides speak, or `protocol mismatch`.
fn negotiate_protocol(p: &ConnectParams) -> Result<u32, Rejected> {
    version::negotiate(p.min_protocol.0, p.max_protocol.0).ok_or_else(|| {
        let e = ErrorShape::invalid("protocol mismatch").with_details(json!({
            "code": detail::PROTOCOL_MISMATCH,
            "clientMinProtocol": p.min_protocol.0,
            "clientMaxProtocol": p.max_protocol.0,
            "expectedProtocol": version::MAX_PROTOCOL,
            "minimumProbeProtocol": version::MIN_PROTOCOL,
        }));
        reject(e, close::PROTOCOL_ERROR, close::reason::PROTOCOL_MISMATCH)
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
    let clip = |s: &str| crate::presence::clip_field(s).to_owned();
    let name = p.client.display_name.as_ref().map(|s| clip(s));
    let entry = PresenceEntry {
        host: name.clone(),
        ip: Some(peer.client_ip.to_string()),
        version: Some(clip(p.client.version.as_str())),
        platform: Some(clip(p.client.platform.as_str())),
        device_family: p.client.device_family.as_ref().map(|s| clip(s)),
        model_identifier: p.client.model_identifier.as_ref().map(|s| clip(s)),
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
            clip(p.client.version.as_str()),
            p.client.mode.as_str()
        )),
        ts: now_ms,
        device_id: a.device_id.clone(),
        roles: Some(vec![a.role.as_str().into()]),
        scopes: Some(a.scopes.clone()),
        instance_id: p.client.instance_id.as_ref().map(|s| clip(s)),
        client_id: Some(clip(p.client.id.as_str())),
        time_zone: p.client.time_zone.as_ref().map(|s| clip(s)),
        online_since: Some(now_ms),
        ..Default::default()
    };
    Some((key, entry))
}
