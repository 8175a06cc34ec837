//! The local `tailscaled`'s LocalAPI over its unix socket: `status` (is the daemon up, in
//! which state, with which addresses and login, in TUN or userspace mode) and `whois` (which
//! tailnet login a peer address belongs to). The gateway uses both (its tailnet listener,
//! `status`, Serve sign-in); `pincer-node doctor` reports the board's tailnet with `status`.
//!
//! Hand-written: two GETs answered with small JSON bodies. An HTTP/1.0 request makes the
//! daemon answer without chunking and close the socket, so a response is its head and the
//! bytes up to EOF — capped at [`MAX_RESPONSE`] and [`TIMEOUT`]. An HTTP client crate would add
//! more to the binary than this file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The daemon's socket where Debian's and Tailscale's packages put it.
pub const DEFAULT_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// Whether `ip` is in Tailscale's ranges (100.64.0.0/10, fd7a:115c:a1e0::/48).
pub fn is_tailnet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 100 && (o[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

/// The largest LocalAPI answer read (a `status` without peers is a few KB; a whois a few).
pub const MAX_RESPONSE: usize = 256 * 1024;
/// How long one LocalAPI call may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// What went wrong asking the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalApiError {
    /// Nothing listens on the socket: the daemon is not running (or the path is wrong).
    #[error("tailscaled is not running (no LocalAPI at {path}: {source})")]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The socket broke mid-answer.
    #[error("LocalAPI read failed: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within [`TIMEOUT`].
    #[error("LocalAPI did not answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    /// The answer exceeded [`MAX_RESPONSE`].
    #[error("LocalAPI answer larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// Not an HTTP response, or not the JSON expected.
    #[error("LocalAPI answer not understood: {0}")]
    Malformed(String),
    /// A status other than 200 (the body's first line says why).
    #[error("LocalAPI said {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body's first line.
        message: String,
    },
}

/// The daemon's view of itself (`/localapi/v0/status?peers=false`), the fields we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonStatus {
    /// `Running`, `NeedsLogin`, `Stopped`, `Starting`, `NoState`, …
    pub backend_state: String,
    /// A kernel TUN interface (false: `--tun=userspace-networking`, no address on the host).
    pub tun: bool,
    /// This node's tailnet addresses.
    pub addresses: Vec<IpAddr>,
    /// This node's MagicDNS name (trailing dot removed), when it has one.
    pub dns_name: Option<String>,
    /// The login this node belongs to.
    pub login: Option<String>,
}

impl DaemonStatus {
    /// `BackendState` is `Running`.
    pub fn running(&self) -> bool {
        self.backend_state == "Running"
    }
}

/// Who a tailnet address belongs to (`/localapi/v0/whois`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whois {
    /// The user's login (`UserProfile.LoginName`), what Serve sends as `Tailscale-User-Login`.
    pub login: String,
    /// The user's display name.
    pub name: Option<String>,
    /// The node's name.
    pub node: Option<String>,
}

/// A client of one daemon's LocalAPI socket.
#[derive(Debug, Clone)]
pub struct LocalApi {
    socket: PathBuf,
}

impl LocalApi {
    /// The daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> LocalApi {
        LocalApi {
            socket: socket.into(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's state, addresses and login.
    pub async fn status(&self) -> Result<DaemonStatus, LocalApiError> {
        let body = self.get("/localapi/v0/status?peers=false").await?;
        parse_status(&body)
    }

    /// The login of the tailnet peer at `ip` (`None`: the daemon knows no node there).
    pub async fn whois(&self, ip: IpAddr) -> Result<Option<Whois>, LocalApiError> {
        match self.get(&format!("/localapi/v0/whois?addr={ip}")).await {
            Ok(body) => parse_whois(&body).map(Some),
            // "no match for IP:port" / "peer not found".
            Err(LocalApiError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET path`: the body of a 200 answer.
    async fn get(&self, path: &str) -> Result<Vec<u8>, LocalApiError> {
        match tokio::time::timeout(TIMEOUT, self.exchange(path)).await {
            Ok(r) => r,
            Err(_) => Err(LocalApiError::Timeout),
        }
    }

    async fn exchange(&self, path: &str) -> Result<Vec<u8>, LocalApiError> {
        let mut s = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| LocalApiError::NotRunning {
                path: self.socket.clone(),
                source,
            })?;
        // The Host is the one the tailscale CLI sends; `Sec-Tailscale` marks a LocalAPI client.
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: local-tailscaled.sock\r\nSec-Tailscale: localapi\r\nUser-Agent: pincer-gateway\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(8 * 1024);
        let mut chunk = [0u8; 8 * 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            if buf.len() + n > MAX_RESPONSE {
                return Err(LocalApiError::TooLarge);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        split_response(&buf)
    }
}

/// A whole HTTP response: the body of a 200, or the status and the body's first line.
fn split_response(buf: &[u8]) -> Result<Vec<u8>, LocalApiError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(LocalApiError::Malformed("response head cut short".into()))
        }
        Err(e) => return Err(LocalApiError::Malformed(e.to_string())),
    };
    let status = res.code.unwrap_or(0);
    let body = &buf[head_len..];
    if status != 200 {
        let text = String::from_utf8_lossy(body);
        let message = text.lines().next().unwrap_or("").trim();
        return Err(LocalApiError::Status {
            status,
            message: message.chars().take(200).collect(),
        });
    }
    Ok(body.to_vec())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawStatus {
    #[serde(default)]
    backend_state: String,
    #[serde(default, rename = "TUN")]
    tun: bool,
    #[serde(default, rename = "TailscaleIPs")]
    tailscale_ips: Option<Vec<IpAddr>>,
    #[serde(default, rename = "Self")]
    self_: Option<RawSelf>,
    #[serde(default)]
    user: Option<std::collections::HashMap<String, RawProfile>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSelf {
    #[serde(default, rename = "DNSName")]
    dns_name: String,
    #[serde(default, rename = "UserID")]
    user_id: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawProfile {
    #[serde(default)]
    login_name: String,
    #[serde(default)]
    display_name: String,
}

fn parse_status(body: &[u8]) -> Result<DaemonStatus, LocalApiError> {
    let raw: RawStatus =
        serde_json::from_slice(body).map_err(|e| LocalApiError::Malformed(e.to_string()))?;
    let (dns_name, login) = match &raw.self_ {
        Some(me) => {
            let dns = me.dns_name.trim_end_matches('.');
            let uid = match &me.user_id {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                _ => String::new(),
            };
            let login = raw
                .user
                .as_ref()
                .and_then(|u| u.get(&uid))
                .map(|p| p.login_name.clone())
                .filter(|l| !l.is_empty());
            ((!dns.is_empty()).then(|| dns.to_owned()), login)
        }
        None => (None, None),
    };
    Ok(DaemonStatus {
        backend_state: raw.backend_state,
        tun: raw.tun,
        addresses: raw.tailscale_ips.unwrap_or_default(),
        dns_name,
        login,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawWhois {
    #[serde(default)]
    node: Option<RawNode>,
    #[serde(default)]
    user_profile: Option<RawProfile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNode {
    #[serde(default)]
    name: String,
}

fn parse_whois(body: &[u8]) -> Result<Whois, LocalApiError> {
    let raw: RawWhois =
        serde_json::from_slice(body).map_err(|e| LocalApiError::Malformed(e.to_string()))?;
    let profile = raw
        .user_profile
        .filter(|p| !p.login_name.is_empty())
        .ok_or_else(|| LocalApiError::Malformed("whois without a user login".into()))?;
    Ok(Whois {
        login: profile.login_name,
        name: (!profile.display_name.is_empty()).then_some(profile.display_name),
        node: raw
            .node
            .map(|n| n.name.trim_end_matches('.').to_owned())
            .filter(|n| !n.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_state_addresses_and_login() {
        let body = br#"{"Version":"1.102.5","TUN":true,"BackendState":"Running",
            "TailscaleIPs":["100.64.0.1","fd7a:115c:a1e0::1"],
            "Self":{"DNSName":"pi.pincer.test.","UserID":7},
            "User":{"7":{"ID":7,"LoginName":"pincer@","DisplayName":"Pincer"}}}"#;
        let s = parse_status(body).unwrap();
        assert!(s.running() && s.tun);
        assert_eq!(s.addresses[0], "100.64.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.dns_name.as_deref(), Some("pi.pincer.test"));
        assert_eq!(s.login.as_deref(), Some("pincer@"));
        let stopped =
            parse_status(br#"{"BackendState":"NeedsLogin","TailscaleIPs":null}"#).unwrap();
        assert!(!stopped.running() && stopped.addresses.is_empty() && stopped.login.is_none());
        assert!(matches!(
            parse_status(b"<html>"),
            Err(LocalApiError::Malformed(_))
        ));
    }

    #[test]
    fn whois_needs_a_login() {
        let w = parse_whois(
            br#"{"Node":{"Name":"laptop.pincer.test."},"UserProfile":{"LoginName":"ann@","DisplayName":"Ann"}}"#,
        )
        .unwrap();
        assert_eq!(w.login, "ann@");
        assert_eq!(w.node.as_deref(), Some("laptop.pincer.test"));
        // A tagged node has no user: no login to sign in as.
        assert!(parse_whois(br#"{"Node":{"Name":"x"},"UserProfile":{"LoginName":""}}"#).is_err());
    }

    #[test]
    fn responses_are_split_and_refusals_kept() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}";
        assert_eq!(split_response(ok).unwrap(), b"{}");
        let nf = b"HTTP/1.0 404 Not Found\r\n\r\nno match for IP:port\n";
        match split_response(nf) {
            Err(LocalApiError::Status { status, message }) => {
                assert_eq!((status, message.as_str()), (404, "no match for IP:port"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            split_response(b"HTTP/1.0 200"),
            Err(LocalApiError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn a_missing_daemon_is_named() {
        let api = LocalApi::new("/nonexistent/tailscaled.sock");
        let e = api.status().await.unwrap_err();
        assert!(e.to_string().contains("tailscaled is not running"), "{e}");
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_cap() {
        let dir = std::env::temp_dir().join(format!("pincer-localapi-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("ts.sock");
        let _ = std::fs::remove_file(&sock);
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            let junk = vec![b'x'; 64 * 1024];
            while s.write_all(&junk).await.is_ok() {}
        });
        let e = LocalApi::new(&sock).status().await.unwrap_err();
        assert!(matches!(e, LocalApiError::TooLarge), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
