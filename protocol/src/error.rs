//! The error object of `res` frames and the codes the reference uses (§1.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Top-level error codes.
pub mod code {
    pub const NOT_LINKED: &str = "NOT_LINKED";
    pub const NOT_PAIRED: &str = "NOT_PAIRED";
    pub const AGENT_TIMEOUT: &str = "AGENT_TIMEOUT";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const APPROVAL_NOT_FOUND: &str = "APPROVAL_NOT_FOUND";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Used by OpenClaw 2026.9 for missing scopes (older gateways say `INVALID_REQUEST`).
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Node results larger than `policy.maxPayload`.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
}

/// `details.code` values for connect failures.
pub mod detail {
    pub const AUTH_REQUIRED: &str = "AUTH_REQUIRED";
    pub const AUTH_UNAUTHORIZED: &str = "AUTH_UNAUTHORIZED";
    pub const AUTH_TOKEN_MISSING: &str = "AUTH_TOKEN_MISSING";
    pub const AUTH_TOKEN_MISMATCH: &str = "AUTH_TOKEN_MISMATCH";
    pub const AUTH_TOKEN_NOT_CONFIGURED: &str = "AUTH_TOKEN_NOT_CONFIGURED";
    pub const AUTH_PASSWORD_MISSING: &str = "AUTH_PASSWORD_MISSING";
    pub const AUTH_PASSWORD_MISMATCH: &str = "AUTH_PASSWORD_MISMATCH";
    pub const AUTH_PASSWORD_NOT_CONFIGURED: &str = "AUTH_PASSWORD_NOT_CONFIGURED";
    pub const AUTH_DEVICE_TOKEN_MISMATCH: &str = "AUTH_DEVICE_TOKEN_MISMATCH";
    pub const AUTH_BOOTSTRAP_TOKEN_INVALID: &str = "AUTH_BOOTSTRAP_TOKEN_INVALID";
    pub const AUTH_RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
    pub const DEVICE_IDENTITY_REQUIRED: &str = "DEVICE_IDENTITY_REQUIRED";
    pub const DEVICE_AUTH_INVALID: &str = "DEVICE_AUTH_INVALID";
    pub const DEVICE_AUTH_DEVICE_ID_MISMATCH: &str = "DEVICE_AUTH_DEVICE_ID_MISMATCH";
    pub const DEVICE_AUTH_SIGNATURE_EXPIRED: &str = "DEVICE_AUTH_SIGNATURE_EXPIRED";
    pub const DEVICE_AUTH_NONCE_REQUIRED: &str = "DEVICE_AUTH_NONCE_REQUIRED";
    pub const DEVICE_AUTH_NONCE_MISMATCH: &str = "DEVICE_AUTH_NONCE_MISMATCH";
    pub const DEVICE_AUTH_SIGNATURE_INVALID: &str = "DEVICE_AUTH_SIGNATURE_INVALID";
    pub const DEVICE_AUTH_PUBLIC_KEY_INVALID: &str = "DEVICE_AUTH_PUBLIC_KEY_INVALID";
    pub const PAIRING_REQUIRED: &str = "PAIRING_REQUIRED";
    pub const PROTOCOL_MISMATCH: &str = "PROTOCOL_MISMATCH";
    pub const AUTH_SCOPE_MISMATCH: &str = "AUTH_SCOPE_MISMATCH";
}

/// `ErrorShape`: a closed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorShape {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }

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
