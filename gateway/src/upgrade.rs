//! The HTTP upgrade of an accepted socket: byte-capped reads before authentication, the
//! WebSocket accept, and what the request headers say about the peer (forwarding headers,
//! trusted proxies, the `Host`).

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::config::Limits;
use crate::handshake::Peer;

/// Bytes allowed for the HTTP upgrade request on top of the pre-auth frame cap.
pub const UPGRADE_ALLOWANCE: usize = 16 * 1024;

/// The socket of a connection.
pub type Ws = WebSocketStream<Limited<TcpStream>>;

/// A stream that fails reads once more than `limit` bytes were read in total.
pub struct Limited<S> {
    inner: S,
    read: usize,
    limit: Arc<AtomicUsize>,
}

impl<S> Limited<S> {
    /// Wraps `inner`; reads fail once more than `limit` bytes came in altogether (the limit is
    /// shared: the link lifts it after `hello-ok`).
    pub fn new(inner: S, limit: Arc<AtomicUsize>) -> Self {
        Limited {
            inner,
            read: 0,
            limit,
        }
    }
}

/// Marker text of the error [`Limited`] returns.
const OVER_LIMIT: &str = "preauth payload too large";

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.read += buf.filled().len() - before;
            if self.read > self.limit.load(Ordering::Relaxed) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OVER_LIMIT)));
            }
        }
        r
    }
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
        WsError::Io(io) => io.to_string().contains(OVER_LIMIT),
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
fn peer_from(req: &Request, ip: IpAddr, trusted: bool) -> Peer {
    let h = req.headers();
    let mut p = Peer {
        client_ip: ip,
        ip,
        forwarded: FORWARD_HEADERS.iter().any(|n| h.contains_key(*n)),
        host_is_local: true,
    };
    if trusted {
        // The proxy appends the address it saw last: that is the client as far as we trust.
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let claimed = header("x-forwarded-for")
            .and_then(|v| v.rsplit(',').next())
            .or_else(|| header("x-real-ip"))
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(c) = claimed {
            p.client_ip = c;
        }
    }
    p.host_is_local = h
        .get("host")
        .and_then(|v| v.to_str().ok())
        .is_none_or(host_is_local);
    p
}

/// Upgrades `tcp` to a WebSocket whose reads are capped at `limit` bytes in total (raised by
/// the link after `hello-ok`) and whose frames are capped at `limits.max_payload`.
// The upgrade callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
pub async fn accept(
    tcp: TcpStream,
    ip: IpAddr,
    trusted_proxy: bool,
    limits: &Limits,
    limit: Arc<AtomicUsize>,
) -> Result<(Ws, Peer), WsError> {
    let _ = tcp.set_nodelay(true);
    let peer = Arc::new(Mutex::new(None));
    let peer_cb = peer.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        *peer_cb.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(peer_from(req, ip, trusted_proxy));
        Ok(resp)
    };
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 1024;
    cfg.write_buffer_size = 0;
    cfg.max_message_size = Some(limits.max_payload);
    cfg.max_frame_size = Some(limits.max_payload);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        Limited::new(tcp, limit),
        callback,
        Some(cfg),
    )
    .await?;
    let peer = peer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or(Peer {
            client_ip: ip,
            ip,
            forwarded: false,
            host_is_local: true,
        });
    Ok((ws, peer))
}

#[cfg(test)]
mod tests {
    use super::host_is_local;

    #[test]
    fn host_header_locality() {
        assert!(host_is_local("127.0.0.1:18789"));
        assert!(host_is_local("localhost"));
        assert!(host_is_local("[::1]:18789"));
        assert!(!host_is_local("gateway.example:18789"));
        assert!(!host_is_local("192.168.1.4:18789"));
    }
}
