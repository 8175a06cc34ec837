//! The WebSocket upgrade of a socket whose request head [`crate::http`] read: byte-capped
//! reads before authentication ([`Limited`]), the `101` answer, and what the request headers
//! say about the peer (forwarding headers, trusted proxies, the `Host`, the `Origin`).

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::tls::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::config::Limits;
use crate::handshake::Peer;
use crate::http::head::Head;
use crate::http::{self, Response};
use pincer_protocol::ws_meter::Meter;

/// Bytes allowed for the HTTP upgrade request on top of the pre-auth frame cap.
pub const UPGRADE_ALLOWANCE: usize = 16 * 1024;

/// The socket of a connection.
pub type Ws = WebSocketStream<Limited<Stream>>;

/// The caps on what a connection's socket reads, changed while it is open: before `hello-ok`
/// a total in bytes; after it, a cap per message that follows the connection's role.
#[derive(Debug)]
pub struct ReadCaps {
    total: AtomicUsize,
    message: AtomicUsize,
}

impl ReadCaps {
    /// `total` bytes in all, no message over `message` bytes.
    pub fn new(total: usize, message: usize) -> Arc<Self> {
        Arc::new(ReadCaps {
            total: AtomicUsize::new(total),
            message: AtomicUsize::new(message),
        })
    }

    /// After `hello-ok`: no total, each message at most `message` bytes.
    pub fn admitted(&self, message: usize) {
        self.message.store(message, Ordering::Relaxed);
        self.total.store(usize::MAX, Ordering::Relaxed);
    }
}

/// A stream that fails reads once more than the total cap was read, or once a frame header
/// declares a message over the message cap (before its payload is buffered anywhere).
pub struct Limited<S> {
    inner: S,
    read: usize,
    /// The last four bytes of the HTTP upgrade request, until its blank line has been read;
    /// `None` once frames follow.
    http_tail: Option<[u8; 4]>,
    meter: Meter,
    caps: Arc<ReadCaps>,
}

impl<S> Limited<S> {
    /// Wraps `inner` under `caps` (shared: the link changes them after `hello-ok`).
    pub fn new(inner: S, caps: Arc<ReadCaps>) -> Self {
        Limited {
            inner,
            read: 0,
            http_tail: Some([0; 4]),
            meter: Meter::new(),
            caps,
        }
    }

    /// Another request head follows on this socket (HTTP keep-alive): its bytes count afresh.
    pub fn next_request(&mut self) {
        self.read = 0;
        self.http_tail = Some([0; 4]);
        self.meter = Meter::new();
    }
}

/// Marker text of the error [`Limited`] returns past the total cap.
const OVER_LIMIT: &str = "preauth payload too large";
/// Marker text of the error [`Limited`] returns for a message over the message cap.
const OVER_MESSAGE_CAP: &str = "message over this connection's maxPayload";

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let this = &mut *self;
            let mut fresh = &buf.filled()[before..];
            this.read += fresh.len();
            if let Some(tail) = this.http_tail.as_mut() {
                // Frames start after the request's blank line (a client may send both at once).
                match end_of_request(tail, fresh) {
                    Some(at) => {
                        this.http_tail = None;
                        fresh = &fresh[at..];
                    }
                    None => fresh = &[],
                }
            }
            if this.read > this.caps.total.load(Ordering::Relaxed) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OVER_LIMIT)));
            }
            let cap = this.caps.message.load(Ordering::Relaxed) as u64;
            if let Err(e) = this.meter.feed(fresh, cap) {
                tracing::debug!(declared = e.declared, cap = e.cap, "message over the cap");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    OVER_MESSAGE_CAP,
                )));
            }
        }
        r
    }
}

/// Where in `chunk` the HTTP request ends (just past `\r\n\r\n`), given the last four bytes
/// before it in `tail` (updated).
fn end_of_request(tail: &mut [u8; 4], chunk: &[u8]) -> Option<usize> {
    for (i, b) in chunk.iter().enumerate() {
        *tail = [tail[1], tail[2], tail[3], *b];
        if tail == b"\r\n\r\n" {
            return Some(i + 1);
        }
    }
    None
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether a read failed on a text frame that is not UTF-8.
pub fn is_bad_utf8(e: &WsError) -> bool {
    matches!(e, WsError::Utf8(_))
}

/// Whether a read failed because a frame or the pre-auth byte cap was exceeded.
pub fn is_over_limit(e: &WsError) -> bool {
    match e {
        WsError::Io(io) => {
            let text = io.to_string();
            text.contains(OVER_LIMIT) || text.contains(OVER_MESSAGE_CAP)
        }
        WsError::Capacity(_) => true,
        _ => false,
    }
}

const FORWARD_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "x-forwarded-host",
];

fn host_is_local(host: &str) -> bool {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map_or(h, |(n, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                n
            } else {
                h
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What the upgrade request said about the peer.
pub fn peer_from(req: &Head, ip: IpAddr, trusted: bool) -> Peer {
    let mut p = Peer {
        client_ip: ip,
        ip,
        forwarded: FORWARD_HEADERS.iter().any(|n| req.header(n).is_some()),
        host_is_local: true,
        origin: req.header("origin").map(str::to_owned),
        host: req.header("host").map(str::to_owned),
        tailscale: None,
    };
    if trusted {
        // The proxy appends the address it saw last: that is the client as far as we trust.
        let claimed = req
            .header("x-forwarded-for")
            .and_then(|v| v.rsplit(',').next())
            .or_else(|| req.header("x-real-ip"))
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(c) = claimed {
            p.client_ip = c;
        }
    }
    p.host_is_local = req.header("host").is_none_or(host_is_local);
    p
}

/// Answers the upgrade request `req` with `101` and wraps the socket (`leftover`: bytes read
/// after the head) in a WebSocket whose frames are capped at `limits.max_payload`; a request
/// that is not a valid RFC 6455 upgrade gets its error response instead.
pub async fn finish(
    mut io: Limited<Stream>,
    req: &Head,
    leftover: Vec<u8>,
    limits: &Limits,
) -> Result<Ws, Response> {
    let refuse = |status: u16, why: &str| Response::text(status, why);
    let bad = if req.method != "GET" {
        Some(refuse(400, "a WebSocket upgrade is a GET"))
    } else if !req.has_token("connection", "upgrade") {
        Some(refuse(400, "Connection: Upgrade missing"))
    } else if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        let mut r = refuse(426, "WebSocket version 13 only");
        r.headers.push(("sec-websocket-version", "13".into()));
        Some(r)
    } else {
        None
    };
    let key = req.header("sec-websocket-key").map(str::trim);
    let (bad, key) = match (bad, key) {
        (Some(b), _) => (Some(b), ""),
        (None, None) | (None, Some("")) => (Some(refuse(400, "Sec-WebSocket-Key missing")), ""),
        (None, Some(k)) => (None, k),
    };
    if let Some(r) = bad {
        let status = r.status;
        http::write(&mut io, r, false, false).await;
        return Err(Response::text(status, ""));
    }
    let accept = derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    use tokio::io::AsyncWriteExt;
    if io.write_all(answer.as_bytes()).await.is_err() || io.flush().await.is_err() {
        return Err(Response::text(500, "peer left"));
    }
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 1024;
    cfg.write_buffer_size = 0;
    cfg.max_message_size = Some(limits.max_payload);
    cfg.max_frame_size = Some(limits.max_payload);
    Ok(WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(cfg)).await)
}

#[cfg(test)]
mod tests {
    use super::{end_of_request, host_is_local};

    #[test]
    fn the_request_ends_at_its_blank_line_across_chunks() {
        let mut tail = [0; 4];
        assert_eq!(
            end_of_request(&mut tail, b"GET / HTTP/1.1\r\nHost: x\r"),
            None
        );
        assert_eq!(end_of_request(&mut tail, b"\n\r"), None);
        assert_eq!(end_of_request(&mut tail, b"\n\x81\x85"), Some(1));
        let mut tail = [0; 4];
        assert_eq!(end_of_request(&mut tail, b"a\r\n\r\n"), Some(5));
    }

    #[test]
    fn host_header_locality() {
        assert!(host_is_local("127.0.0.1:18789"));
        assert!(host_is_local("localhost"));
        assert!(host_is_local("[::1]:18789"));
        assert!(!host_is_local("gateway.example:18789"));
        assert!(!host_is_local("192.168.1.4:18789"));
    }
}
