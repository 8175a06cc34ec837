//! Who a request through Tailscale Serve is: the rules of the reference's ingress
//! attribution (`src/gateway/ingress-attribution.ts`), for the gateway's own Serve listener.
//!
//! * Only the Serve listener ([`Ingress::Serve`], loopback, its port known only to the route
//!   the gateway set up) may carry Serve's identity. There a request must come from loopback
//!   with Serve's `X-Forwarded-For`, `-Host` and (HTTPS) `-Proto`, name a non-loopback client in
//!   `X-Forwarded-For`, and carry `Tailscale-User-Login`; the local daemon's whois of that
//!   client address must name the same login.
//! * Tailscale's headers anywhere else (the ordinary port) are refused outright: a local
//!   process could write them.

use std::net::IpAddr;

use super::{Tailscale, Whois};
use crate::http::head::Head;

/// Which listener a socket came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The gateway's port (loopback, LAN or tailnet address).
    Ordinary,
    /// The loopback listener that only the gateway's own Serve route points at.
    Serve,
}

/// What Serve's headers proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeIdentity {
    /// The daemon confirmed the login for the client's address.
    Verified {
        /// The tailnet login (`Tailscale-User-Login`, as whois spells it).
        login: String,
        /// The user's display name, when known.
        name: Option<String>,
    },
    /// The headers do not prove who this is.
    Refused(Refusal),
}

/// Why Serve's headers were not accepted (the reference's `AUTH_TAILSCALE_*` codes; the
/// handshake words them, `crate::auth::failure_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Tailscale headers not from the gateway's own Serve route (`tailscale_proxy_missing`).
    ProxyMissing,
    /// Through Serve, but no `Tailscale-User-Login` (a tagged node, say) (`tailscale_user_missing`).
    IdentityMissing,
    /// The daemon could not say who the client address is (`tailscale_whois_failed`).
    WhoisFailed,
    /// The daemon names someone else for that address (`tailscale_user_mismatch`).
    Mismatch,
}

/// Headers only Tailscale's proxy writes.
const TAILSCALE_HEADERS: [&str; 5] = [
    "tailscale-user-login",
    "tailscale-user-name",
    "tailscale-user-profile-pic",
    "tailscale-headers-info",
    "tailscale-funnel-request",
];

/// The Serve identity of a request on `ingress` from socket address `ip`, and the client
/// address it names; `None` when the request carries no Tailscale claim at all.
pub async fn attribute(
    ts: &Tailscale,
    req: &Head,
    ip: IpAddr,
    ingress: Ingress,
) -> Option<(ServeIdentity, Option<IpAddr>)> {
    let claims = TAILSCALE_HEADERS.iter().any(|h| req.header(h).is_some());
    match ingress {
        Ingress::Ordinary if claims => Some((ServeIdentity::Refused(Refusal::ProxyMissing), None)),
        Ingress::Ordinary => None,
        Ingress::Serve => {
            let (id, client) = serve_identity(ts, req, ip).await;
            Some((id, client))
        }
    }
}

async fn serve_identity(ts: &Tailscale, req: &Head, ip: IpAddr) -> (ServeIdentity, Option<IpAddr>) {
    let refused = |r| (ServeIdentity::Refused(r), None);
    // Serve sets X-Forwarded-Proto only on HTTPS (`serve_https = false` has none).
    let https = ts.serve_https;
    let proxied = ["x-forwarded-for", "x-forwarded-host"]
        .iter()
        .all(|h| req.header(h).is_some())
        && (!https || req.header("x-forwarded-proto").is_some());
    if !ip.is_loopback() || !proxied || req.header("tailscale-funnel-request").is_some() {
        tracing::debug!(%ip, proxied, "Serve listener: not Serve's request shape");
        return refused(Refusal::ProxyMissing);
    }
    let Some(client) = forwarded_client(req.header("x-forwarded-for").unwrap_or("")) else {
        tracing::debug!(xff = ?req.header("x-forwarded-for"), "Serve listener: no tailnet client in X-Forwarded-For");
        return refused(Refusal::ProxyMissing);
    };
    let Some(login) = req
        .header("tailscale-user-login")
        .map(str::trim)
        .filter(|l| !l.is_empty())
    else {
        return (
            ServeIdentity::Refused(Refusal::IdentityMissing),
            Some(client),
        );
    };
    let id = match ts.whois(client).await {
        Err(e) => {
            tracing::warn!(%client, error = %e, "whois failed");
            ServeIdentity::Refused(Refusal::WhoisFailed)
        }
        Ok(None) => {
            tracing::warn!(%client, "whois: the tailnet has no node at this address");
            ServeIdentity::Refused(Refusal::WhoisFailed)
        }
        Ok(Some(Whois {
            login: who, name, ..
        })) if who.eq_ignore_ascii_case(login) => ServeIdentity::Verified { login: who, name },
        Ok(Some(_)) => ServeIdentity::Refused(Refusal::Mismatch),
    };
    (id, Some(client))
}

/// The client Serve names: the last `X-Forwarded-For` entry that is not loopback.
fn forwarded_client(xff: &str) -> Option<IpAddr> {
    xff.rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::forwarded_client;

    #[test]
    fn the_client_is_the_last_non_loopback_forwarded_address() {
        assert_eq!(
            forwarded_client("100.64.0.2"),
            Some("100.64.0.2".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("10.0.0.9, 100.64.0.2, 127.0.0.1"),
            Some("100.64.0.2".parse().unwrap())
        );
        assert_eq!(forwarded_client("127.0.0.1"), None);
        assert_eq!(forwarded_client("garbage"), None);
    }
}
