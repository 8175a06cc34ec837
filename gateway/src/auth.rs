//! Shared-secret authentication (token or password), compared in constant time, and the error
//! objects the reference sends when it fails.

use pincer_protocol::error::{detail, ErrorShape};
use serde_json::json;

use crate::config::AuthMode;
use crate::secret::ct_eq;
use crate::tailscale::ingress::Refusal;

/// How a connection authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `token`: the shared gateway token.
    Token,
    /// `password`: the shared gateway password.
    Password,
    /// `device-token`: a device token issued at an earlier connect.
    DeviceToken,
    /// A setup code (`auth.bootstrapToken`).
    Bootstrap,
    /// `none`: auth mode `none`, nothing checked (loopback binds only).
    None,
    /// `tailscale`: Tailscale Serve's login, confirmed by the local daemon's whois.
    Tailscale,
}

impl AuthMethod {
    /// The name in `hello-ok.auth.method` and logs (`device-token`, `bootstrap-token`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::Password => "password",
            AuthMethod::DeviceToken => "device-token",
            AuthMethod::Bootstrap => "bootstrap-token",
            AuthMethod::None => "none",
            AuthMethod::Tailscale => "tailscale",
        }
    }
}

/// Why the shared secret did not authenticate the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFailure {
    /// Token mode, and `auth.token` absent or empty (`AUTH_TOKEN_MISSING`).
    TokenMissing,
    /// Token mode, and `auth.token` is not the gateway's token (`AUTH_TOKEN_MISMATCH`).
    TokenMismatch,
    /// Password mode, and `auth.password` absent or empty (`AUTH_PASSWORD_MISSING`).
    PasswordMissing,
    /// Password mode, and `auth.password` is wrong (`AUTH_PASSWORD_MISMATCH`).
    PasswordMismatch,
    /// Not compared: remote failures filled the window ([`crate::limits::AuthLockout`]); retry
    /// after this many milliseconds.
    GuessingPaused(u64),
    /// No secret sent, and Tailscale Serve's headers did not prove who the client is.
    Tailscale(Refusal),
}

/// Checks the shared secret of `mode` against what the client sent.
pub fn check_shared(
    mode: &AuthMode,
    token: Option<&str>,
    password: Option<&str>,
) -> Result<AuthMethod, SharedFailure> {
    match mode {
        AuthMode::None => Ok(AuthMethod::None),
        AuthMode::Token(expected) => match token.filter(|t| !t.is_empty()) {
            None => Err(SharedFailure::TokenMissing),
            Some(t) if ct_eq(t.as_bytes(), expected.as_bytes()) => Ok(AuthMethod::Token),
            Some(_) => Err(SharedFailure::TokenMismatch),
        },
        AuthMode::Password(expected) => match password.filter(|p| !p.is_empty()) {
            None => Err(SharedFailure::PasswordMissing),
            Some(p) if ct_eq(p.as_bytes(), expected.as_bytes()) => Ok(AuthMethod::Password),
            Some(_) => Err(SharedFailure::PasswordMismatch),
        },
    }
}

/// The close reason of every Tailscale refusal (the response says which one).
const TAILSCALE_CLOSE: &str = "unauthorized: tailscale identity not confirmed";

/// The error and close reason for a failed shared-secret check.
pub fn failure_error(
    f: SharedFailure,
    can_retry_with_device_token: bool,
) -> (ErrorShape, &'static str) {
    let (code, reason, message, close, step) = match f {
        SharedFailure::TokenMissing => (
            detail::AUTH_TOKEN_MISSING,
            "token_missing",
            "unauthorized: gateway token missing (provide the gateway auth token)",
            "unauthorized: gateway token missing",
            "update_auth_configuration",
        ),
        SharedFailure::TokenMismatch => (
            detail::AUTH_TOKEN_MISMATCH,
            "token_mismatch",
            "unauthorized: gateway token mismatch (use the token printed by pincer-gateway or set PINCER_GATEWAY_TOKEN)",
            "unauthorized: gateway token mismatch",
            if can_retry_with_device_token { "retry_with_device_token" } else { "update_auth_credentials" },
        ),
        SharedFailure::PasswordMissing => (
            detail::AUTH_PASSWORD_MISSING,
            "password_missing",
            "unauthorized: gateway password missing (provide the gateway password)",
            "unauthorized: gateway password missing",
            "update_auth_configuration",
        ),
        SharedFailure::PasswordMismatch => (
            detail::AUTH_PASSWORD_MISMATCH,
            "password_mismatch",
            "unauthorized: gateway password mismatch",
            "unauthorized: gateway password mismatch",
            "update_auth_credentials",
        ),
        SharedFailure::GuessingPaused(wait) => return paused(wait, can_retry_with_device_token),
        SharedFailure::Tailscale(Refusal::ProxyMissing) => (
            detail::AUTH_TAILSCALE_PROXY_MISSING,
            "tailscale_proxy_missing",
            "unauthorized: tailscale proxy headers missing (use Tailscale Serve or gateway token/password)",
            TAILSCALE_CLOSE,
            "update_auth_configuration",
        ),
        SharedFailure::Tailscale(Refusal::IdentityMissing) => (
            detail::AUTH_TAILSCALE_IDENTITY_MISSING,
            "tailscale_user_missing",
            "unauthorized: tailscale identity missing (use Tailscale Serve auth or gateway token/password)",
            TAILSCALE_CLOSE,
            "update_auth_configuration",
        ),
        SharedFailure::Tailscale(Refusal::WhoisFailed) => (
            detail::AUTH_TAILSCALE_WHOIS_FAILED,
            "tailscale_whois_failed",
            "unauthorized: tailscale identity check failed (use Tailscale Serve auth or gateway token/password)",
            TAILSCALE_CLOSE,
            "update_auth_configuration",
        ),
        SharedFailure::Tailscale(Refusal::Mismatch) => (
            detail::AUTH_TAILSCALE_IDENTITY_MISMATCH,
            "tailscale_user_mismatch",
            "unauthorized: tailscale identity mismatch (use Tailscale Serve auth or gateway token/password)",
            TAILSCALE_CLOSE,
            "update_auth_configuration",
        ),
    };
    let err = ErrorShape::invalid(message).with_details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry_with_device_token,
        "recommendedNextStep": step,
    }));
    (err, close)
}

/// The refusal while shared-secret guessing is paused (it carries the retry time).
fn paused(wait: u64, can_retry_with_device_token: bool) -> (ErrorShape, &'static str) {
    let e =
        ErrorShape::invalid("unauthorized: too many failed authentication attempts (retry later)")
            .with_details(json!({
                "code": detail::AUTH_RATE_LIMITED,
                "authReason": "rate_limited",
                "canRetryWithDeviceToken": can_retry_with_device_token,
                "recommendedNextStep": "wait_then_retry",
            }))
            .retry_after(wait);
    (e, "unauthorized: rate limited")
}

/// The error for a device token that does not match.
pub fn device_token_mismatch() -> (ErrorShape, &'static str) {
    let err =
        ErrorShape::invalid("unauthorized: device token mismatch (rotate/reissue device token)")
            .with_details(json!({
                "code": detail::AUTH_DEVICE_TOKEN_MISMATCH,
                "authReason": "device_token_mismatch",
                "canRetryWithDeviceToken": false,
                "recommendedNextStep": "update_auth_credentials",
            }));
    (err, "unauthorized: device token mismatch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secret_checks() {
        let m = AuthMode::Token("s3cret".into());
        assert_eq!(
            check_shared(&m, Some("s3cret"), None),
            Ok(AuthMethod::Token)
        );
        assert_eq!(
            check_shared(&m, Some("nope"), None),
            Err(SharedFailure::TokenMismatch)
        );
        assert_eq!(
            check_shared(&m, None, Some("s3cret")),
            Err(SharedFailure::TokenMissing)
        );
        assert_eq!(
            check_shared(&m, Some(""), None),
            Err(SharedFailure::TokenMissing)
        );
        let p = AuthMode::Password("pw".into());
        assert_eq!(
            check_shared(&p, Some("pw"), None),
            Err(SharedFailure::PasswordMissing)
        );
        assert_eq!(check_shared(&p, None, Some("pw")), Ok(AuthMethod::Password));
        assert_eq!(
            check_shared(&AuthMode::None, None, None),
            Ok(AuthMethod::None)
        );
        let (e, close) = failure_error(SharedFailure::TokenMismatch, false);
        assert_eq!(e.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
        assert!(close.starts_with("unauthorized"));
    }
}
