//! The HTTP side of the port. Every accepted socket starts here: a request head is read under
//! the pre-auth caps ([`head`]); a WebSocket upgrade goes on to the handshake
//! ([`crate::link`]), any other request is answered with a page ([`pages`]) on the same socket.
//!
//! Bounds: a head is at most [`UPGRADE_ALLOWANCE`](crate::upgrade::UPGRADE_ALLOWANCE) bytes and
//! [`head::MAX_HEADERS`] lines; a socket serves at most [`MAX_REQUESTS`] pages, waits at most
//! the handshake timeout for each next head, and holds its pre-auth slot all the while (the
//! per-IP and total budgets count page sockets too). A request with a body, or one pipelined
//! behind another, is answered and the socket closed: nothing here reads bodies.

pub mod head;
pub mod pages;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::Stream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::handshake::Peer;
use crate::hub::Hub;
use crate::tailscale::ingress::{Ingress, Refusal, ServeIdentity};
use crate::upgrade::{self, Limited, ReadCaps, Ws, UPGRADE_ALLOWANCE};
use head::HeadError;

/// Pages one socket serves before it is closed.
pub const MAX_REQUESTS: usize = 100;
/// Each write of a response must make progress within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status, headers and body.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// What follows the head.
    pub body: Body,
}

/// A response body.
pub enum Body {
    /// Nothing (204, 304, HEAD).
    Empty,
    /// Bytes compiled into the binary.
    Static(&'static [u8]),
    /// Bytes made for this response.
    Owned(Vec<u8>),
    /// A file, streamed in chunks, of this length.
    File(tokio::fs::File, u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Owned(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            body: Body::Owned(text.as_bytes().to_vec()),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `r` (without its body when `head_only`), each write under [`WRITE_TIMEOUT`]; false
/// when the peer did not take it.
pub async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    r: Response,
    keep_alive: bool,
    head_only: bool,
) -> bool {
    let mut text = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (n, v) in &r.headers {
        text.push_str(n);
        text.push_str(": ");
        text.push_str(v);
        text.push_str("\r\n");
    }
    let len = r.body.len();
    if r.status != 304 {
        text.push_str(&format!("content-length: {len}\r\n"));
    }
    text.push_str(if keep_alive {
        "connection: keep-alive\r\n\r\n"
    } else {
        "connection: close\r\n\r\n"
    });
    if !matches!(
        timeout(WRITE_TIMEOUT, io.write_all(text.as_bytes())).await,
        Ok(Ok(()))
    ) {
        return false;
    }
    if head_only {
        return matches!(timeout(WRITE_TIMEOUT, io.flush()).await, Ok(Ok(())));
    }
    let ok = match r.body {
        Body::Empty => true,
        Body::Static(b) => matches!(timeout(WRITE_TIMEOUT, io.write_all(b)).await, Ok(Ok(()))),
        Body::Owned(b) => matches!(timeout(WRITE_TIMEOUT, io.write_all(&b)).await, Ok(Ok(()))),
        Body::File(mut f, n) => copy_file(&mut f, io, n).await,
    };
    ok && matches!(timeout(WRITE_TIMEOUT, io.flush()).await, Ok(Ok(())))
}

/// Streams `n` bytes of `f` to `io` in 16 KiB chunks (a file that shrank ends the response
/// short; the peer sees a broken length and retries).
async fn copy_file<S: AsyncWrite + Unpin>(f: &mut tokio::fs::File, io: &mut S, n: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut left = n;
    let mut chunk = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = match f.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return false,
            Ok(g) => g,
        };
        if !matches!(
            timeout(WRITE_TIMEOUT, io.write_all(&chunk[..got])).await,
            Ok(Ok(()))
        ) {
            return false;
        }
        left -= got as u64;
    }
    true
}

/// Serves `tcp` until it asks for a WebSocket (returned upgraded) or stops asking for pages.
/// The first head must arrive before `deadline`; the handshake keeps the remaining time (the
/// deadline returned). `None`: pages were served (or the peer left, or broke a limit) and the
/// socket is closed.
pub async fn front(
    hub: &Arc<Hub>,
    tcp: Stream,
    ip: IpAddr,
    ingress: Ingress,
    caps: Arc<ReadCaps>,
    deadline: Instant,
) -> Option<(Ws, Peer, Instant)> {
    let limits = hub.config.limits;
    let trusted = hub.config.trusted_proxies.contains(&ip);
    let mut io = Limited::new(tcp, caps);
    let mut buf = Vec::new();
    let mut deadline = deadline;
    for _ in 0..MAX_REQUESTS {
        let head =
            match timeout_at(deadline, head::read(&mut io, &mut buf, UPGRADE_ALLOWANCE)).await {
                Err(_) | Ok(Err(HeadError::Closed)) => return None,
                Ok(Err(e)) => {
                    tracing::debug!(%ip, error = %e, "bad request head");
                    let status = match e {
                        HeadError::TooLarge(_) | HeadError::TooManyHeaders => 431,
                        _ => 400,
                    };
                    write(
                        &mut io,
                        Response::text(status, &e.to_string()),
                        false,
                        false,
                    )
                    .await;
                    return None;
                }
                Ok(Ok(h)) => h,
            };
        if head.is_websocket() {
            let mut peer = upgrade::peer_from(&head, ip, trusted);
            // Serve's identity headers, confirmed by the daemon's whois (within the deadline).
            let serve = crate::tailscale::ingress::attribute(&hub.tailscale, &head, ip, ingress);
            match timeout_at(deadline, serve).await {
                Ok(Some((id, client))) => {
                    if let Some(c) = client {
                        peer.client_ip = c;
                    }
                    peer.tailscale = Some(id);
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(%ip, "whois did not answer before the handshake deadline");
                    peer.tailscale = Some(ServeIdentity::Refused(Refusal::WhoisFailed));
                }
            }
            return match upgrade::finish(io, &head, std::mem::take(&mut buf), &limits).await {
                Ok(ws) => Some((ws, peer, deadline)),
                Err(r) => {
                    tracing::debug!(%ip, status = r.status, "websocket upgrade refused");
                    None
                }
            };
        }
        let keep = head.keep_alive() && !head.has_body() && buf.is_empty();
        let head_only = head.method == "HEAD";
        let response = pages::answer(hub, &head).await;
        tracing::debug!(%ip, method = %head.method, target = %head.target, status = response.status, "page");
        if !write(&mut io, response, keep, head_only).await || !keep {
            return None;
        }
        io.next_request();
        deadline = Instant::now() + Duration::from_millis(limits.handshake_timeout_ms);
    }
    None
}
