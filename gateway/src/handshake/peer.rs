//! Where a socket comes from ([`Peer`], seen at the HTTP upgrade) and how near that makes the
//! client ([`Locality`]), which decides whether pairing may be silent.

use std::net::IpAddr;

/// Where a socket comes from, as seen at the HTTP upgrade.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The socket's remote address.
    pub ip: IpAddr,
    /// The client's address: `ip`, or what a trusted proxy says in `X-Forwarded-For` /
    /// `X-Real-IP`.
    pub client_ip: IpAddr,
    /// Any of `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Real-IP`,
    /// `X-Forwarded-Host` was present.
    pub forwarded: bool,
    /// The `Host` header names this machine (or is absent).
    pub host_is_local: bool,
    /// The `Origin` header: sent by browsers, checked against the gateway's own origin and
    /// `[control_ui] allowed_origins`.
    pub origin: Option<String>,
    /// The `Host` header as sent.
    pub host: Option<String>,
    /// What Tailscale Serve's identity headers proved, when the request carried any
    /// (`crate::tailscale::ingress`).
    pub tailscale: Option<crate::tailscale::ingress::ServeIdentity>,
}

/// How near a client is, for silent pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// Loopback socket, no forwarding headers, local `Host`.
    DirectLocal,
    /// A socket from this host's own tailnet address (no proxy in between).
    TailnetSelf,
    /// Everything else: LAN, other tailnet hosts, anything behind a proxy.
    Remote,
}

impl Peer {
    /// A peer seen directly on `ip` with no headers (tests, internal use).
    pub fn direct(ip: IpAddr) -> Peer {
        Peer {
            ip,
            client_ip: ip,
            forwarded: false,
            host_is_local: true,
            origin: None,
            host: None,
            tailscale: None,
        }
    }

    /// A direct loopback socket.
    pub fn is_direct_local(&self) -> bool {
        self.locality() == Locality::DirectLocal
    }

    /// How local the peer is, for silent pairing: forwarded sockets are always remote.
    pub fn locality(&self) -> Locality {
        if self.forwarded {
            return Locality::Remote;
        }
        if self.ip.is_loopback() && self.host_is_local {
            return Locality::DirectLocal;
        }
        if crate::config::is_tailnet(self.ip) && is_own_address(self.ip) {
            return Locality::TailnetSelf;
        }
        Locality::Remote
    }
}

/// Whether `ip` is configured on one of this host's interfaces (a bind to it succeeds).
pub fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}
