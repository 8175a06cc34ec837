//! The error object of `res` frames and the codes the reference uses (§1.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Top-level error codes.
pub mod code {
    /// A channel account is not linked (reference code; not sent by Pincer).
    pub const NOT_LINKED: &str = "NOT_LINKED";
    /// The device is not paired for this role, or sent no device identity where one is required.
    pub const NOT_PAIRED: &str = "NOT_PAIRED";
    /// An agent run timed out (reference code; not sent by Pincer).
    pub const AGENT_TIMEOUT: &str = "AGENT_TIMEOUT";
    /// Bad params, unknown method, wrong role, missing scope (v3), bad auth or protocol mismatch.
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// No exec or plugin approval with that id (reference code; not sent by Pincer).
    pub const APPROVAL_NOT_FOUND: &str = "APPROVAL_NOT_FOUND";
    /// The handler failed or could not run now: node offline or timed out, rate limit, startup.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Used by OpenClaw 2026.9 for missing scopes (older gateways say `INVALID_REQUEST`).
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Node results larger than `policy.maxPayload`.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
}

/// `details.code` values for connect failures.
pub mod detail {
    /// Auth failed and the reference gave no reason (its mapping of an undefined reason).
    pub const AUTH_REQUIRED: &str = "AUTH_REQUIRED";
    /// Auth failed for a reason no more specific `AUTH_*` code covers.
    pub const AUTH_UNAUTHORIZED: &str = "AUTH_UNAUTHORIZED";
    /// The gateway is in token mode and `auth.token` is absent.
    pub const AUTH_TOKEN_MISSING: &str = "AUTH_TOKEN_MISSING";
    /// `auth.token` is not the gateway's shared token (nor a valid device token).
    pub const AUTH_TOKEN_MISMATCH: &str = "AUTH_TOKEN_MISMATCH";
    /// The gateway is in token mode but has no token configured (`gateway.auth.token`).
    pub const AUTH_TOKEN_NOT_CONFIGURED: &str = "AUTH_TOKEN_NOT_CONFIGURED";
    /// The gateway is in password mode and `auth.password` is absent.
    pub const AUTH_PASSWORD_MISSING: &str = "AUTH_PASSWORD_MISSING";
    /// `auth.password` is wrong.
    pub const AUTH_PASSWORD_MISMATCH: &str = "AUTH_PASSWORD_MISMATCH";
    /// The gateway is in password mode but has no password configured (`gateway.auth.password`).
    pub const AUTH_PASSWORD_NOT_CONFIGURED: &str = "AUTH_PASSWORD_NOT_CONFIGURED";
    /// The device token is unknown, revoked, or not for this device and role.
    pub const AUTH_DEVICE_TOKEN_MISMATCH: &str = "AUTH_DEVICE_TOKEN_MISMATCH";
    /// `auth.bootstrapToken` (a setup code's token) is unknown, expired or bound to another device.
    pub const AUTH_BOOTSTRAP_TOKEN_INVALID: &str = "AUTH_BOOTSTRAP_TOKEN_INVALID";
    /// Too many failed auth attempts from this client IP; locked out for a while.
    pub const AUTH_RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
    /// Tailscale identity headers that did not come through the gateway's own Serve route.
    pub const AUTH_TAILSCALE_PROXY_MISSING: &str = "AUTH_TAILSCALE_PROXY_MISSING";
    /// Through Serve, but without a `Tailscale-User-Login` (a tagged node).
    pub const AUTH_TAILSCALE_IDENTITY_MISSING: &str = "AUTH_TAILSCALE_IDENTITY_MISSING";
    /// The local daemon's whois could not confirm the client address.
    pub const AUTH_TAILSCALE_WHOIS_FAILED: &str = "AUTH_TAILSCALE_WHOIS_FAILED";
    /// The local daemon's whois names another login than Serve's header.
    pub const AUTH_TAILSCALE_IDENTITY_MISMATCH: &str = "AUTH_TAILSCALE_IDENTITY_MISMATCH";
    /// `connect.device` is absent where it is required (always for nodes).
    pub const DEVICE_IDENTITY_REQUIRED: &str = "DEVICE_IDENTITY_REQUIRED";
    /// The device proof failed for a reason no more specific `DEVICE_AUTH_*` code covers.
    pub const DEVICE_AUTH_INVALID: &str = "DEVICE_AUTH_INVALID";
    /// `device.id` is not the SHA-256 of `device.publicKey` (`details.reason: device-id-mismatch`).
    pub const DEVICE_AUTH_DEVICE_ID_MISMATCH: &str = "DEVICE_AUTH_DEVICE_ID_MISMATCH";
    /// `device.signedAt` is more than 120 s from gateway time (`device-signature-stale`).
    pub const DEVICE_AUTH_SIGNATURE_EXPIRED: &str = "DEVICE_AUTH_SIGNATURE_EXPIRED";
    /// `device.nonce` is empty (`device-nonce-missing`).
    pub const DEVICE_AUTH_NONCE_REQUIRED: &str = "DEVICE_AUTH_NONCE_REQUIRED";
    /// `device.nonce` is not this socket's `connect.challenge` nonce (`device-nonce-mismatch`).
    pub const DEVICE_AUTH_NONCE_MISMATCH: &str = "DEVICE_AUTH_NONCE_MISMATCH";
    /// `device.signature` verifies over neither the v3 nor the v2 payload (`device-signature`).
    pub const DEVICE_AUTH_SIGNATURE_INVALID: &str = "DEVICE_AUTH_SIGNATURE_INVALID";
    /// `device.publicKey` does not decode to an Ed25519 key (`device-public-key`).
    pub const DEVICE_AUTH_PUBLIC_KEY_INVALID: &str = "DEVICE_AUTH_PUBLIC_KEY_INVALID";
    /// Pairing must be approved first; `details` also carry `requestId` and `reason`.
    pub const PAIRING_REQUIRED: &str = "PAIRING_REQUIRED";
    /// A browser page from an origin the gateway does not trust.
    pub const CONTROL_UI_ORIGIN_NOT_ALLOWED: &str = "CONTROL_UI_ORIGIN_NOT_ALLOWED";
    /// v4: the connect's protocol range excludes the gateway's; `details` give both ranges.
    pub const PROTOCOL_MISMATCH: &str = "PROTOCOL_MISMATCH";
    /// v4: the token is recognised but does not cover the requested role or scopes.
    pub const AUTH_SCOPE_MISMATCH: &str = "AUTH_SCOPE_MISMATCH";
}

/// `ErrorShape`: a closed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorShape {
    /// Top-level code, one of [`code`] (`INVALID_REQUEST`, `UNAVAILABLE`, …).
    pub code: String,
    /// Human-readable text; clients key their handling on the codes, not on this.
    pub message: String,
    /// Structured detail; for connect failures `details.code` is one of [`detail`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// True when the same request may succeed if retried later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How long to wait before retrying, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with `code` and `message` and nothing else.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// An `INVALID_REQUEST` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }

    /// An `UNAVAILABLE` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(code::UNAVAILABLE, message)
    }

    /// Adds `details` (an object).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds `details.code` (and keeps other detail keys).
    pub fn with_detail_code(mut self, detail_code: &str) -> Self {
        let mut map = match self.details.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        map.insert("code".into(), Value::String(detail_code.into()));
        self.details = Some(Value::Object(map));
        self
    }

    /// Marks the error `retryable`, with `retryAfterMs` = `ms`.
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retryable = Some(true);
        self.retry_after_ms = Some(ms);
        self
    }

    /// `details.code`, when present.
    pub fn detail_code(&self) -> Option<&str> {
        self.details.as_ref()?.get("code")?.as_str()
    }
}

impl core::fmt::Display for ErrorShape {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.message.starts_with(self.code.as_str()) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}
