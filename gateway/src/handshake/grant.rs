//! Step 6, the scopes a connection is granted: none for nodes; for operators, what they asked
//! for, bounded by a setup code's profile or a device token's grant, and dropped for
//! device-less clients that are not trusted local helpers.

use pincer_protocol::close;
use pincer_protocol::connect::{ClientId, ClientMode, ConnectParams};
use pincer_protocol::error::{detail, ErrorShape};
use pincer_protocol::scopes::{self, Role};
use serde_json::json;

use super::credentials::Credentials;
use super::rejected::{reject, Rejected};
use super::{Inputs, Peer};
use crate::auth::AuthMethod;

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

/// The requested scopes that exist, each once, in the order asked: a scope outside the
/// operator set grants nothing and is neither stored with a pairing nor echoed in `hello-ok`.
fn normalize_scopes(requested: &[String]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in requested.iter().map(|s| s.trim()) {
        if scopes::ALL_OPERATOR.contains(&s) && !v.iter().any(|k| k == s) {
            v.push(s.to_owned());
        }
    }
    v
}

/// The granted scopes, or a refusal when a device token does not cover a requested scope.
pub(super) fn grant(
    cx: &Inputs<'_>,
    role: Role,
    creds: &Credentials,
    has_device: bool,
) -> Result<Vec<String>, Rejected> {
    let requested = normalize_scopes(cx.p.scopes());
    let granted: Vec<String> = match role {
        Role::Node => Vec::new(),
        // A setup code grants at most its profile's scopes.
        Role::Operator if creds.bootstrap() => {
            let profile = creds.bootstrap_scopes.clone().unwrap_or_default();
            requested
                .iter()
                .filter(|s| scopes::satisfies(&profile, s))
                .cloned()
                .collect()
        }
        Role::Operator if !has_device => {
            if keeps_scopes_without_device(cx.p, cx.peer, creds.method) {
                requested.clone()
            } else {
                Vec::new()
            }
        }
        Role::Operator => match &creds.token_scopes {
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
    Ok(granted)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_scopes_are_granted_each_once() {
        let asked: Vec<String> = [
            "operator.read",
            " operator.write ",
            "operator.read",
            "",
            "x.y",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once("z".repeat(100_000)))
        .collect();
        assert_eq!(
            super::normalize_scopes(&asked),
            vec!["operator.read".to_string(), "operator.write".to_string()]
        );
    }
}
