//! Step 5, which credential authenticates the connection: a valid setup code (bootstrap
//! token) wins; otherwise the shared secret (checked in step 3); otherwise, for a proven
//! device, its device token.

use pincer_protocol::close;
use pincer_protocol::connect::ConnectAuth;
use pincer_protocol::error::{detail, ErrorShape};
use pincer_protocol::scopes::Role;
use serde_json::json;

use super::proof::ProvenDevice;
use super::rejected::{auth_reject, store_error, Rejected};
use super::Inputs;
use crate::auth::{self, AuthMethod, SharedFailure};
use crate::devices::{BootstrapCheck, TokenCheck};

/// How the connection authenticated, and the scopes its credential carries.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    pub method: AuthMethod,
    /// A setup code authenticated: the scopes of its profile.
    pub bootstrap_scopes: Option<Vec<String>>,
    /// A device token authenticated: the scopes it holds.
    pub token_scopes: Option<Vec<String>>,
}

impl Credentials {
    /// A valid setup code authenticated the connection.
    pub fn bootstrap(&self) -> bool {
        self.bootstrap_scopes.is_some()
    }
}

/// Decides the credential; `shared` is the outcome of the shared-secret check.
pub(super) fn authenticate(
    cx: &Inputs<'_>,
    role: Role,
    a: &ConnectAuth,
    shared: Result<AuthMethod, SharedFailure>,
    device: Option<&ProvenDevice>,
) -> Result<Credentials, Rejected> {
    let bootstrap_scopes = redeem_setup_code(cx, role, a, device)?;
    let (method, token_scopes) = match (bootstrap_scopes.is_some(), shared, device) {
        (true, _, _) => (AuthMethod::Bootstrap, None),
        (false, Ok(m), _) => (m, None),
        (false, Err(f), Some(d)) => {
            let explicit = a.device_token.as_deref();
            let candidate = explicit.or(a.token.as_deref()).filter(|t| !t.is_empty());
            let check = match candidate {
                Some(t) => cx
                    .hub
                    .devices
                    .verify_token(&d.id, &d.public_key, role.as_str(), t)
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
    Ok(Credentials {
        method,
        bootstrap_scopes,
        token_scopes,
    })
}

/// A setup code sent by a proven device: its profile's scopes when valid (binding it to the
/// device), a refusal when not; `None` when there is no code or no device identity.
fn redeem_setup_code(
    cx: &Inputs<'_>,
    role: Role,
    a: &ConnectAuth,
    device: Option<&ProvenDevice>,
) -> Result<Option<Vec<String>>, Rejected> {
    let (Some(d), Some(bt)) = (
        device,
        a.bootstrap_token.as_deref().filter(|t| !t.is_empty()),
    ) else {
        return Ok(None);
    };
    match cx
        .hub
        .devices
        .redeem_bootstrap(bt, &d.id, &d.public_key, role.as_str(), cx.now_ms)
        .map_err(store_error)?
    {
        BootstrapCheck::Valid { scopes, .. } => Ok(Some(scopes)),
        BootstrapCheck::Invalid(why) => {
            let e = ErrorShape::invalid(format!("unauthorized: bootstrap token invalid ({why})"))
                .with_details(json!({
                    "code": detail::AUTH_BOOTSTRAP_TOKEN_INVALID,
                    "authReason": "bootstrap_token_invalid",
                    "canRetryWithDeviceToken": false,
                    "recommendedNextStep": "update_auth_credentials",
                }));
            Err(auth_reject(
                e,
                close::POLICY_VIOLATION,
                "unauthorized: bootstrap token invalid",
            ))
        }
    }
}
