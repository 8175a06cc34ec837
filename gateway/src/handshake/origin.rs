//! The browser origin check (step 2b, the reference's `checkBrowserOrigin`). A client whose
//! upgrade carried an `Origin` header is a web page; it may connect when its origin is
//!
//! * listed in `[control_ui] allowed_origins` (or the list holds `"*"`);
//! * the gateway's own, the origin's host being the `Host` the page reached, and that host a
//!   loopback name (for a local client), a private or loopback address, or a `.local` /
//!   `.ts.net` name;
//! * a loopback origin, for a client on this very host (a development server).
//!
//! Anything else is refused before authentication, as the reference refuses it:
//! `INVALID_REQUEST` with `details.code` `CONTROL_UI_ORIGIN_NOT_ALLOWED`, close 1008.

use std::net::IpAddr;

use pincer_protocol::close;
use pincer_protocol::error::{detail, ErrorShape};
use serde_json::json;

use super::rejected::{reject, Rejected};
use super::Peer;

/// The reference's message, pointing at the setting that allows another origin.
pub const MESSAGE: &str = "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";

/// `scheme://host[:port]` lower-cased, and the host alone; `None` when it is not an origin.
fn parse(origin: &str) -> Option<(String, String)> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = o.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        || authority.is_empty()
        || authority.contains(['/', '?', '#', '\\', '@'])
    {
        return None;
    }
    Some((o.clone(), authority.to_owned()))
}

/// The name in `host[:port]` (brackets of an IPv6 literal removed).
fn hostname(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn is_loopback_name(h: &str) -> bool {
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_private() || v.is_loopback() || v.is_link_local() || crate::config::is_tailnet(ip)
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a page reaching the gateway as `host` is trusted as the gateway's own.
fn trusted_same_origin(host: &str, local_client: bool) -> bool {
    let name = hostname(host);
    if is_loopback_name(name) {
        return local_client;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => is_private(ip),
        Err(_) => name.ends_with(".local") || name.ends_with(".ts.net"),
    }
}

/// Why `origin` may not connect, `None` when it may.
pub fn refusal(
    origin: &str,
    host: Option<&str>,
    local_client: bool,
    allowed: &[String],
) -> Option<&'static str> {
    let Some((origin, authority)) = parse(origin) else {
        return Some("origin missing or invalid");
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return None;
    }
    let host = host.map(|h| h.trim().to_ascii_lowercase());
    if host.as_deref() == Some(authority.as_str()) && trusted_same_origin(&authority, local_client)
    {
        return None;
    }
    if local_client && is_loopback_name(hostname(&authority)) {
        return None;
    }
    Some("origin not allowed")
}

/// Step 2b: refuses a page from an origin the gateway does not trust.
pub fn check(peer: &Peer, allowed: &[String]) -> Result<(), Rejected> {
    let Some(origin) = peer.origin.as_deref() else {
        return Ok(());
    };
    match refusal(
        origin,
        peer.host.as_deref(),
        peer.is_direct_local(),
        allowed,
    ) {
        None => Ok(()),
        Some(reason) => {
            tracing::info!(%origin, host = peer.host.as_deref().unwrap_or("-"), ip = %peer.ip, reason, "browser origin refused");
            Err(reject(
                ErrorShape::invalid(MESSAGE).with_details(json!({
                    "code": detail::CONTROL_UI_ORIGIN_NOT_ALLOWED,
                    "reason": reason,
                })),
                close::POLICY_VIOLATION,
                MESSAGE,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn the_gateways_own_origin_is_allowed_where_the_reference_allows_it() {
        let ok = |o: &str, h: &str, local: bool| refusal(o, Some(h), local, &[]).is_none();
        assert!(ok("http://127.0.0.1:18789", "127.0.0.1:18789", true));
        assert!(ok("http://192.168.1.7:18789", "192.168.1.7:18789", false));
        assert!(ok("http://pi.local:18789", "pi.local:18789", false));
        assert!(ok(
            "https://pi.tail1234.ts.net",
            "pi.tail1234.ts.net",
            false
        ));
        assert!(ok("http://localhost:5173", "127.0.0.1:18789", true));
        // A public name the page reached is not trusted without the allowlist.
        assert!(!ok(
            "http://gw.example.com:18789",
            "gw.example.com:18789",
            false
        ));
        // Another site's page, even on this host's loopback, for a remote client.
        assert!(!ok("http://evil.example", "127.0.0.1:18789", true));
        assert!(!ok("http://127.0.0.1:8000", "10.0.0.2:18789", false));
        assert!(!ok("null", "127.0.0.1:18789", true));
        assert!(!ok("http://a/b", "a", true));
    }

    #[test]
    fn the_allowlist_takes_exact_origins_or_a_star() {
        let list = vec!["https://ui.example.com".to_owned()];
        assert!(refusal("https://UI.example.com/", Some("x:1"), false, &list).is_none());
        assert!(refusal("https://other.example.com", Some("x:1"), false, &list).is_some());
        assert!(refusal("https://any.example", Some("x:1"), false, &["*".to_owned()]).is_none());
    }
}
