//! Step 4, the device proof: the public key parses, the device id is derived from it, the
//! signature is fresh and signs this connection's challenge nonce, and it verifies (v3
//! payload, then v2).

use pincer_protocol::close;
use pincer_protocol::connect::ConnectAuth;
use pincer_protocol::error::{detail, ErrorShape};
use pincer_protocol::identity::{signature_token, PublicKey, SignedFields};
use pincer_protocol::scopes::Role;
use serde_json::json;

use super::rejected::{auth_reject, Rejected};
use super::Inputs;

/// Allowed clock difference between `device.signedAt` and the gateway.
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// A device identity the proof established.
#[derive(Debug, Clone)]
pub(super) struct ProvenDevice {
    /// Derived from the public key (lower-case hex).
    pub id: String,
    /// The key, re-encoded as base64url.
    pub public_key: String,
}

fn device_failure(detail_code: &str, reason: &str, message: &str) -> Rejected {
    auth_reject(
        ErrorShape::invalid(message).with_details(json!({ "code": detail_code, "reason": reason })),
        close::POLICY_VIOLATION,
        message,
    )
}

/// Checks `connect.device`; `None` when the client sent no device identity.
pub(super) fn verify(
    cx: &Inputs<'_>,
    role: Role,
    a: &ConnectAuth,
) -> Result<Option<ProvenDevice>, Rejected> {
    let p = cx.p;
    let Some(d) = &p.device else {
        return Ok(None);
    };
    let pk = PublicKey::from_wire(&d.public_key).map_err(|_| {
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
    if cx.now_ms.abs_diff(d.signed_at) > SIGNATURE_SKEW_MS {
        return Err(device_failure(
            detail::DEVICE_AUTH_SIGNATURE_EXPIRED,
            "device-signature-stale",
            "device signature expired",
        ));
    }
    if d.nonce.trim() != cx.nonce {
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
    Ok(Some(ProvenDevice {
        id: derived.as_str().to_owned(),
        public_key: pk.to_base64url().as_str().to_owned(),
    }))
}
