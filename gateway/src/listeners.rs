//! The gateway's listening sockets and their accept loops.
//!
//! * The port on the configured address. Bound to one address that is not loopback (a
//!   tailnet or a named address), the gateway also listens on `127.0.0.1` at the same port,
//!   as the reference does, so the board's own CLI reaches it.
//! * `bind = "tailnet"`: the tailnet address is watched every [`TAILNET_POLL`]. With none at
//!   start (the daemon not up yet: boards boot in any order) the gateway listens on loopback
//!   and adds the tailnet address when it appears; a changed address is listened on anew.
//! * `[tailscale] serve`: a loopback listener on a port of its own that only the gateway's
//!   Serve route points at ([`Ingress::Serve`]).
//!
//! Each listener's accept loop applies the connection cap and the per-address pre-auth budget
//! (HTTP 503 beyond them) before a socket gets a task.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::link;
use crate::tailscale::ingress::Ingress;

/// How often `bind = "tailnet"` looks for its address.
pub const TAILNET_POLL: Duration = Duration::from_secs(2);
/// The daemon itself is asked every this many polls (its state and login, for `status`).
const DAEMON_LOOK_EVERY: u32 = 5;

/// A task aborted when this is dropped.
pub struct Task(pub JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::server::GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::server::GatewayError::Bind { addr, source })
}

/// The loopback companion of a single-address bind: `Some(127.0.0.1)` beside a unicast
/// address that is not loopback.
pub fn loopback_beside(ip: IpAddr) -> Option<IpAddr> {
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Accepts on `l` until the task is aborted.
pub fn accept(hub: Arc<Hub>, l: TcpListener, ingress: Ingress) -> Task {
    Task(tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((tcp, addr)) => admit_socket(&hub, tcp, addr.ip(), ingress),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

fn admit_socket(hub: &Arc<Hub>, tcp: tokio::net::TcpStream, ip: IpAddr, ingress: Ingress) {
    let limits = &hub.config.limits;
    if hub.connection_count() + hub.preauth.held() >= limits.max_connections {
        tracing::warn!(%ip, max = limits.max_connections, "connection cap reached; answering 503");
        tokio::spawn(refuse_503(tcp, "Too many connections"));
    } else if hub.preauth.acquire(ip) {
        tokio::spawn(link::serve(hub.clone(), tcp, ip, ingress));
    } else {
        tracing::warn!(%ip, "too many unauthenticated sockets; answering 503");
        tokio::spawn(refuse_503(tcp, "Too many unauthenticated sockets"));
    }
}

async fn refuse_503(mut tcp: tokio::net::TcpStream, body: &str) {
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(resp.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// `bind = "tailnet"`: listens on the tailnet address at `port` whenever there is one,
/// starting from `current` (the address bound at start, with its accept loop).
pub async fn watch_tailnet(hub: Arc<Hub>, port: u16, mut current: Option<(IpAddr, Task)>) {
    let scheme = if hub.tls.get().is_some() { "wss" } else { "ws" };
    // What start-up already said is not said again.
    let mut last_error: Option<String> = hub.tailscale.report().why_not;
    let mut polls: u32 = 0;
    loop {
        // The daemon's state for `status` (login, mode): right after a new address and now
        // and then besides (without an address it is asked on every poll, below).
        if current.is_some() && polls % DAEMON_LOOK_EVERY == 0 {
            let _ = hub.tailscale.refresh().await;
        }
        polls = polls.wrapping_add(1);
        match crate::config::tailnet_address() {
            Some(ip) if current.as_ref().map(|c| c.0) != Some(ip) => {
                match TcpListener::bind((ip, port)).await {
                    Ok(l) => {
                        tracing::info!(address = %ip, "tailnet up: listening on {scheme}://{}", SocketAddr::new(ip, port));
                        current = Some((ip, accept(hub.clone(), l, Ingress::Ordinary)));
                        polls = 0;
                        hub.tailscale.update(|r| {
                            r.listening = Some(ip);
                            r.why_not = None;
                        });
                        last_error = None;
                    }
                    Err(e) => {
                        let why = format!("cannot listen on {ip}:{port}: {e}");
                        if last_error.as_deref() != Some(&why) {
                            tracing::warn!("{why}; retrying");
                        }
                        hub.tailscale.update(|r| r.why_not = Some(why.clone()));
                        last_error = Some(why);
                    }
                }
            }
            Some(_) => {}
            None if current.is_none() => {
                let why =
                    crate::tailscale::Tailscale::why_no_address(&hub.tailscale.refresh().await);
                if last_error.as_deref() != Some(&why) {
                    tracing::warn!(reason = %why, "no tailnet address yet: listening on loopback only, the tailnet address is added when it comes up");
                }
                hub.tailscale.update(|r| r.why_not = Some(why.clone()));
                last_error = Some(why);
            }
            // The address went away with the daemon: the socket stays bound to it and
            // answers again when the same address comes back.
            None => {}
        }
        tokio::time::sleep(TAILNET_POLL).await;
    }
}
