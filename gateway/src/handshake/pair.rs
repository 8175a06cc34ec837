//! Step 7, the pairing decision for a proven device: already paired for this role and these
//! scopes, or paired silently (this very host, or a valid setup code), or refused with a
//! pending request for an operator to approve (new device, role upgrade, scope upgrade).

use pincer_protocol::close;
use pincer_protocol::error::{code, detail, ErrorShape};
use pincer_protocol::scopes::{self, Role};
use serde_json::json;

use super::credentials::Credentials;
use super::proof::ProvenDevice;
use super::rejected::{reject, store_error, Rejected};
use super::{Inputs, Locality};
use crate::auth::AuthMethod;
use crate::devices::{PairedDevice, PendingRequest};

/// Lets the device through when it is paired (pairing it silently when allowed), or refuses
/// it with `pairing required`.
pub(super) fn pair(
    cx: &Inputs<'_>,
    role: Role,
    creds: &Credentials,
    device: &ProvenDevice,
    granted: &[String],
) -> Result<(), Rejected> {
    let existing = cx
        .hub
        .devices
        .get(&device.id)
        .filter(|d| d.public_key == device.public_key);
    let Some(reason) = reason(existing.as_ref(), role, granted) else {
        return Ok(());
    };
    // Silent approval only for this very host, and only when the shared secret or a setup
    // code authenticated (a device token never widens its own grant).
    let bootstrap = creds.bootstrap();
    let local = cx.peer.locality() != Locality::Remote;
    let silent = (local && creds.method != AuthMethod::DeviceToken)
        || (bootstrap && reason != "scope-upgrade");
    if !silent {
        return Err(request_approval(
            cx,
            role,
            device,
            granted,
            reason,
            existing.is_some(),
        ));
    }
    let p = cx.p;
    let record = PairedDevice {
        device_id: device.id.clone(),
        public_key: device.public_key.clone(),
        display_name: p.client.display_name.as_ref().map(|s| s.to_string()),
        platform: Some(p.client.platform.to_string()),
        device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
        client_id: Some(p.client.id.as_str().into()),
        client_mode: Some(p.client.mode.as_str().into()),
        roles: vec![],
        scopes: vec![],
        created_at_ms: cx.now_ms,
        approved_at_ms: cx.now_ms,
        tokens: Default::default(),
    };
    cx.hub
        .devices
        .approve(record, role.as_str(), granted)
        .map_err(store_error)?;
    let device_id = &device.id;
    tracing::info!(%device_id, reason, role = role.as_str(), locality = ?cx.peer.locality(), bootstrap, "device paired silently");
    Ok(())
}

/// Why the device needs (re)approval, or `None` when its record covers this connect.
fn reason(existing: Option<&PairedDevice>, role: Role, granted: &[String]) -> Option<&'static str> {
    match existing {
        None => Some("not-paired"),
        Some(d) if !d.roles.iter().any(|r| r == role.as_str()) => Some("role-upgrade"),
        Some(d) if granted.iter().any(|s| !scopes::satisfies(&d.scopes, s)) => {
            Some("scope-upgrade")
        }
        Some(_) => None,
    }
}

/// Creates (or refreshes) the pending request, announces a new one, and returns the
/// `pairing required` refusal that names it.
fn request_approval(
    cx: &Inputs<'_>,
    role: Role,
    device: &ProvenDevice,
    granted: &[String],
    reason: &'static str,
    is_repair: bool,
) -> Rejected {
    let (p, peer, hub) = (cx.p, cx.peer, cx.hub);
    let device_id = &device.id;
    let req = PendingRequest {
        request_id: crate::secret::uuid_v4(),
        device_id: device_id.clone(),
        public_key: device.public_key.clone(),
        display_name: p.client.display_name.as_ref().map(|s| s.to_string()),
        platform: Some(p.client.platform.to_string()),
        device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
        client_id: Some(p.client.id.as_str().into()),
        client_mode: Some(p.client.mode.as_str().into()),
        role: role.as_str().into(),
        roles: vec![role.as_str().into()],
        scopes: granted.to_vec(),
        remote_ip: Some(peer.client_ip.to_string()),
        silent: false,
        is_repair,
        ts: cx.now_ms,
    };
    let r = match hub.devices.request(req, cx.now_ms) {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
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
    reject(e, close::POLICY_VIOLATION, close::reason::PAIRING_REQUIRED)
}
