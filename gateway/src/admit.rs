//! Admission of a decoded `connect`: the lockout check, the [`handshake`] decision, the trust
//! change made durable, the connection registered, and the `hello-ok` it is told.
//!
//! The link calls [`admit`] with the first frame's params and sends what comes back; nothing
//! here touches a socket.

use std::sync::Arc;

use pincer_protocol::close;
use pincer_protocol::connect::{
    ConnectParams, Features, HelloAuth, HelloOk, Policy, ServerInfo, Snapshot,
};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::scopes::{self, Role};

use crate::config::Limits;
use crate::conn::{ConnHandle, Registration};
use crate::handshake::{handshake, presence_entry, Accepted, Peer, Rejected};
use crate::hub::Hub;
use crate::{methods, now_ms, secret, VERSION};

/// A client that got in: its registered connection and the `hello-ok` payload.
#[derive(Debug)]
pub struct Admitted {
    /// The connection, registered with the hub.
    pub conn: Arc<ConnHandle>,
    /// The `hello-ok` to send it.
    pub hello: HelloOk,
}

/// Decides on `params` (answering `nonce`'s challenge) from `peer`. A trust change (pairing, a
/// new device token, a pending request) is on disk before this returns.
pub async fn admit(
    hub: &Arc<Hub>,
    params: &ConnectParams,
    nonce: &str,
    peer: &Peer,
) -> Result<Admitted, Rejected> {
    if hub.is_shutting_down() {
        return Err(Rejected::new(
            ErrorShape::unavailable("gateway is shutting down").retry_after(1000),
            close::SERVICE_RESTART,
            close::reason::SERVICE_RESTART,
        ));
    }
    let now = now_ms();
    if let Some(wait) = hub.lockout.locked(peer.client_ip, now) {
        let e = ErrorShape::invalid(
            "unauthorized: too many failed authentication attempts (retry later)",
        )
        .with_details(serde_json::json!({
            "code": pincer_protocol::error::detail::AUTH_RATE_LIMITED,
            "authReason": "rate_limited",
            "recommendedNextStep": "wait_then_retry",
        }))
        .retry_after(wait);
        return Err(Rejected::new(
            e,
            close::POLICY_VIOLATION,
            "unauthorized: rate limited",
        ));
    }
    let generation = hub.devices.generation();
    let mut decided = handshake(hub, params, nonce, peer, now);
    if hub.devices.generation() != generation {
        if let Err(e) = hub.devices.durable().await {
            if decided.is_ok() {
                decided = Err(Rejected::unavailable(format!(
                    "pairing state not saved: {e}"
                )));
            }
        }
    }
    let accepted = match decided {
        Ok(a) => a,
        Err(r) => {
            if r.auth_failure {
                hub.lockout.failed(peer.client_ip, now);
            }
            tracing::info!(ip = %peer.ip, client_ip = %peer.client_ip, auth_failure = r.auth_failure,
                client = params.client.id.as_str(), reason = %r.close_reason, "connect refused");
            return Err(r);
        }
    };
    let conn = register(hub, params, &accepted, peer, now);
    let hello = hello_ok(hub, &conn, &accepted);
    tracing::info!(
        ip = %peer.ip, conn = %conn.conn_id, client = params.client.id.as_str(),
        mode = params.client.mode.as_str(), role = accepted.role.as_str(),
        protocol = accepted.protocol, auth = accepted.method.as_str(), "connected"
    );
    Ok(Admitted { conn, hello })
}

fn register(
    hub: &Hub,
    params: &ConnectParams,
    accepted: &Accepted,
    peer: &Peer,
    now: u64,
) -> Arc<ConnHandle> {
    let conn_id = secret::uuid_v4();
    let presence = presence_entry(params, accepted, peer, &conn_id, now);
    let node = match (accepted.role, &accepted.device_id) {
        (Role::Node, Some(id)) => {
            let policy = crate::nodes::session::Policy {
                allow: &hub.config.node_allow,
                deny: &hub.config.node_deny,
            };
            let ip = peer.client_ip.to_string();
            let (session, requested) =
                crate::nodes::admit(&policy, &hub.devices, params, id, &ip, now);
            if let Some(r) = requested {
                hub.pairing_event("node.pair.requested", &r);
            }
            Some(session)
        }
        _ => None,
    };
    hub.register(Registration {
        node,
        conn_id,
        device_id: accepted.device_id.clone(),
        role: accepted.role,
        scopes: accepted.scopes.clone(),
        protocol: accepted.protocol,
        presence,
        tool_events: params
            .caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == "tool-events")),
    })
}

/// The largest frame `accepted` may send: the full `maxPayload` for nodes and for operators
/// that may write (invoke params, chat attachments, config), the read-only cap for the rest.
pub fn max_payload(limits: &Limits, accepted: &Accepted) -> usize {
    let writes = accepted
        .scopes
        .iter()
        .any(|s| s == scopes::WRITE || s == scopes::ADMIN);
    if accepted.role == Role::Node || writes {
        limits.max_payload
    } else {
        limits.readonly_max_payload
    }
}

/// The `hello-ok` for an admitted connection: features, snapshot (admin-only fields for
/// admins), the device token when one was minted, and the policy limits.
fn hello_ok(hub: &Hub, conn: &ConnHandle, accepted: &Accepted) -> HelloOk {
    let limits = hub.config.limits;
    let admin = conn.has_scope(scopes::ADMIN);
    HelloOk {
        kind: Default::default(),
        protocol: accepted.protocol,
        server: ServerInfo {
            version: VERSION.into(),
            conn_id: conn.conn_id.clone(),
        },
        features: Features {
            methods: methods::all_methods()
                .filter(|m| !methods::UNADVERTISED.contains(m))
                .map(|s| s.to_string())
                .collect(),
            events: methods::all_events().map(str::to_owned).collect(),
        },
        snapshot: Snapshot {
            presence: hub.presence(),
            health: serde_json::from_str(&hub.health_json(false))
                .unwrap_or(serde_json::Value::Null),
            state_version: hub.state_version(),
            uptime_ms: hub.uptime_ms(),
            config_path: admin
                .then(|| {
                    hub.config
                        .config_path
                        .as_ref()
                        .map(|p| p.display().to_string())
                })
                .flatten(),
            state_dir: admin.then(|| hub.config.state_dir.display().to_string()),
            auth_mode: admin.then(|| hub.config.auth.name().to_owned()),
            session_defaults: Some(pincer_agent::methods::session_defaults(
                hub.config.agent.model.is_some(),
            )),
        },
        auth: Some(HelloAuth {
            device_token: accepted.device_token.as_ref().map(|(t, _)| t.clone()),
            role: accepted.role.as_str().into(),
            scopes: accepted.scopes.clone(),
            issued_at_ms: accepted.device_token.as_ref().map(|(_, at)| *at),
            method: Some(accepted.method.as_str().into()),
        }),
        policy: Policy {
            max_payload: max_payload(&limits, accepted) as u64,
            max_buffered_bytes: limits.max_buffered_bytes as u64,
            tick_interval_ms: limits.tick_interval_ms,
        },
    }
}
