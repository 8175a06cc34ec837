//! One connection's life: upgrade, `connect.challenge`, the first frame, `hello-ok`, then the
//! request/event loop with its bounded outbound queue.
//!
//! Frame limits: before `hello-ok` the socket is read through [`Limited`], which refuses more
//! than 64 KiB (plus room for the HTTP upgrade), so a stranger cannot make the gateway buffer a
//! large frame; after `hello-ok` frames up to `policy.maxPayload` are accepted.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pincer_protocol::close;
use pincer_protocol::connect::{Features, HelloAuth, HelloOk, Policy, ServerInfo, Snapshot};
use pincer_protocol::decode::{decode_request, DecodeError, Params};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::{encode_event_raw, encode_res_err, encode_res_ok};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::handshake::{handshake, presence_entry, Peer};
use crate::hub::{ConnHandle, Hub, Outbound, Registration};
use crate::methods::{self, Dispatch, Refusal};
use crate::{now_ms, secret, VERSION};

/// Bytes allowed for the HTTP upgrade request on top of the pre-auth frame cap.
const UPGRADE_ALLOWANCE: usize = 16 * 1024;
/// Deferred requests (node invokes) one connection may have open at once.
const MAX_IN_FLIGHT: usize = 64;

fn encode_reply(id: &str, r: methods::Reply) -> String {
    match r {
        Ok(payload) => pincer_protocol::frames::encode_res_ok_raw(id, &payload),
        Err(e) => encode_res_err(id, &e),
    }
}

/// Consecutive role violations before the socket is closed.
const MAX_ROLE_VIOLATIONS: u32 = 10;

/// A stream that fails reads once more than `limit` bytes were read in total.
pub struct Limited<S> {
    inner: S,
    read: usize,
    limit: Arc<AtomicUsize>,
}

impl<S> Limited<S> {
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

fn is_over_limit(e: &WsError) -> bool {
    match e {
        WsError::Io(io) => io.to_string().contains(OVER_LIMIT),
        WsError::Capacity(_) => true,
        _ => false,
    }
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: close::truncate_reason(reason).to_owned().into(),
    }))
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

/// Serves one accepted TCP connection until it closes: the handshake (boxed, so its larger
/// state is freed once the client is in), then the request/event loop, whose state is all an
/// idle connection keeps. The caller took a pre-auth slot for `ip`; it is returned when the
/// handshake ends, whichever way (or when the task is dropped).
pub async fn serve(hub: Arc<Hub>, tcp: TcpStream, ip: IpAddr) {
    let slot = PreauthSlot { hub: &hub, ip };
    let est = Box::pin(establish(&hub, tcp, ip)).await;
    drop(slot);
    if let Some(est) = est {
        run(hub, est).await
    }
}

/// A pre-auth slot of `ip`, given back to the hub when dropped.
struct PreauthSlot<'a> {
    hub: &'a Hub,
    ip: IpAddr,
}

impl Drop for PreauthSlot<'_> {
    fn drop(&mut self) {
        self.hub.preauth_release(self.ip);
    }
}

/// A connection that completed its handshake.
struct Established {
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    sink: SplitSink<WebSocketStream<Limited<TcpStream>>, Message>,
    stream: SplitStream<WebSocketStream<Limited<TcpStream>>>,
    conn_id: String,
    open: bool,
}

/// Upgrade, challenge, `connect`, authentication and `hello-ok`; `None` when the client did
/// not get in (it has been answered and closed).
// The upgrade callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn establish(hub: &Arc<Hub>, tcp: TcpStream, ip: IpAddr) -> Option<Established> {
    let limits = hub.config.limits;
    let limit = Arc::new(AtomicUsize::new(
        limits.preauth_max_payload + UPGRADE_ALLOWANCE,
    ));
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + Duration::from_millis(limits.handshake_timeout_ms);

    let trusted = hub.config.trusted_proxies.contains(&ip);
    let peer = Arc::new(Mutex::new(Peer {
        client_ip: ip,
        ip,
        forwarded: false,
        host_is_local: true,
    }));
    let peer_cb = peer.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let h = req.headers();
        let mut p = peer_cb.lock().unwrap_or_else(|e| e.into_inner());
        p.forwarded = FORWARD_HEADERS.iter().any(|n| h.contains_key(*n));
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
        Ok(resp)
    };
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 1024;
    cfg.write_buffer_size = 0;
    cfg.max_message_size = Some(limits.max_payload);
    cfg.max_frame_size = Some(limits.max_payload);
    let stream = Limited::new(tcp, limit.clone());
    let ws = match timeout_at(
        deadline,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(cfg)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%ip, error = %e, "websocket upgrade failed");
            return None;
        }
        Err(_) => {
            return None;
        }
    };
    let peer = peer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (mut sink, mut stream) = ws.split();

    // Challenge, at once.
    let nonce = secret::uuid_v4();
    let challenge = encode_event_raw(
        "connect.challenge",
        &format!(r#"{{"nonce":"{nonce}","ts":{}}}"#, now_ms()),
        None,
        None,
    );
    if sink.send(Message::text(challenge)).await.is_err() {
        return None;
    }

    // First frame.
    let first = loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => {
                tracing::debug!(%ip, "handshake timeout");
                let _ = sink
                    .send(close_msg(close::NORMAL, "handshake timeout"))
                    .await;
                return None;
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                return None;
            }
            Ok(Some(Err(e))) => {
                if is_over_limit(&e) {
                    let _ = sink
                        .send(close_msg(close::TOO_BIG, close::reason::PREAUTH_TOO_LARGE))
                        .await;
                }
                return None;
            }
            Ok(Some(Ok(Message::Text(t)))) => break t,
            Ok(Some(Ok(Message::Binary(_)))) => {
                let _ = sink.send(close_msg(close::NORMAL, "")).await;
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    };
    if first.len() > limits.preauth_max_payload {
        let _ = sink
            .send(close_msg(close::TOO_BIG, close::reason::PREAUTH_TOO_LARGE))
            .await;
        return None;
    }
    let refuse = |id: &str, err: ErrorShape, code: u16, reason: String| {
        (encode_res_err(id, &err), close_msg(code, &reason))
    };
    let (req_id, params) = match decode_request(first.as_str()) {
        Err(DecodeError::NotJson(_)) => {
            let _ = sink.send(close_msg(close::NORMAL, "")).await;
            return None;
        }
        Ok(r) => match r.params {
            Params::Connect(p) => (r.id, p),
            _ => {
                let m = close::reason::FIRST_MUST_BE_CONNECT;
                let (res, c) = refuse(
                    &r.id,
                    ErrorShape::invalid(m),
                    close::POLICY_VIOLATION,
                    m.into(),
                );
                let _ = sink.send(Message::text(res)).await;
                let _ = sink.send(c).await;
                return None;
            }
        },
        Err(e) => {
            let (msg, reason) = match &e {
                DecodeError::InvalidParams {
                    method, message, ..
                } if method == "connect" => {
                    let m = format!("invalid connect params: {message}");
                    (m.clone(), m)
                }
                DecodeError::InvalidParams { .. } => (
                    close::reason::FIRST_MUST_BE_CONNECT.to_owned(),
                    close::reason::FIRST_MUST_BE_CONNECT.to_owned(),
                ),
                _ => (e.message(), close::reason::INVALID_FRAME.to_owned()),
            };
            let (res, c) = refuse(
                e.reply_id(),
                ErrorShape::invalid(msg),
                close::POLICY_VIOLATION,
                reason,
            );
            let _ = sink.send(Message::text(res)).await;
            let _ = sink.send(c).await;
            return None;
        }
    };

    if hub.is_shutting_down() {
        let e = ErrorShape::unavailable("gateway is shutting down").retry_after(1000);
        let _ = sink.send(Message::text(encode_res_err(&req_id, &e))).await;
        let _ = sink
            .send(close_msg(
                close::SERVICE_RESTART,
                close::reason::SERVICE_RESTART,
            ))
            .await;
        return None;
    }

    // Handshake.
    let now = now_ms();
    if let Some(wait) = hub.auth_locked(peer.client_ip, now) {
        let e = ErrorShape::invalid(
            "unauthorized: too many failed authentication attempts (retry later)",
        )
        .with_details(serde_json::json!({
            "code": pincer_protocol::error::detail::AUTH_RATE_LIMITED,
            "authReason": "rate_limited",
            "recommendedNextStep": "wait_then_retry",
        }))
        .retry_after(wait);
        let _ = sink.send(Message::text(encode_res_err(&req_id, &e))).await;
        let _ = sink
            .send(close_msg(
                close::POLICY_VIOLATION,
                "unauthorized: rate limited",
            ))
            .await;
        return None;
    }
    let generation = hub.devices.generation();
    let mut accepted = handshake(hub, &params, &nonce, &peer, now);
    // Pairing, a new device token, a pending request: on disk before the client hears of it.
    if hub.devices.generation() != generation {
        if let Err(e) = hub.devices.durable().await {
            if accepted.is_ok() {
                accepted = Err(crate::handshake::Rejected::unavailable(format!(
                    "pairing state not saved: {e}"
                )));
            }
        }
    }
    let accepted = match accepted {
        Ok(a) => a,
        Err(r) => {
            if r.auth_failure {
                hub.auth_failed(peer.client_ip, now);
            }
            tracing::info!(%ip, client_ip = %peer.client_ip, auth_failure = r.auth_failure, client = params.client.id.as_str(), reason = %r.close_reason, "connect refused");
            let _ = sink
                .send(Message::text(encode_res_err(&req_id, &r.error)))
                .await;
            let _ = sink.send(close_msg(r.close_code, &r.close_reason)).await;
            return None;
        }
    };
    let conn_id = secret::uuid_v4();
    let presence = presence_entry(&params, &accepted, &peer, &conn_id, now);
    let node = match (accepted.role, &accepted.device_id) {
        (pincer_protocol::scopes::Role::Node, Some(id)) => Some(crate::nodes::admit(
            hub,
            &params,
            id,
            &peer.client_ip.to_string(),
            now,
        )),
        _ => None,
    };
    let (conn, rx) = hub.register(Registration {
        node,
        conn_id: conn_id.clone(),
        device_id: accepted.device_id.clone(),
        role: accepted.role,
        scopes: accepted.scopes.clone(),
        protocol: accepted.protocol,
        presence,
    });
    let admin = conn.has_scope(pincer_protocol::scopes::ADMIN);
    let hello = HelloOk {
        kind: Default::default(),
        protocol: accepted.protocol,
        server: ServerInfo {
            version: VERSION.into(),
            conn_id: conn_id.clone(),
        },
        features: Features {
            methods: methods::METHODS.iter().map(|s| s.to_string()).collect(),
            events: methods::EVENTS.iter().map(|s| s.to_string()).collect(),
        },
        snapshot: Snapshot {
            presence: hub.presence(),
            health: serde_json::from_str(&hub.health_json(false))
                .unwrap_or(serde_json::Value::Null),
            state_version: hub.state_version(),
            uptime_ms: hub.uptime_ms(),
            config_path: admin
                .then(|| {
                    hub.config
                        .config_path
                        .as_ref()
                        .map(|p| p.display().to_string())
                })
                .flatten(),
            state_dir: admin.then(|| hub.config.state_dir.display().to_string()),
            auth_mode: admin.then(|| hub.config.auth.name().to_owned()),
            session_defaults: None,
        },
        auth: Some(HelloAuth {
            device_token: accepted.device_token.as_ref().map(|(t, _)| t.clone()),
            role: accepted.role.as_str().into(),
            scopes: accepted.scopes.clone(),
            issued_at_ms: accepted.device_token.as_ref().map(|(_, at)| *at),
            method: Some(accepted.method.as_str().into()),
        }),
        policy: Policy {
            max_payload: limits.max_payload as u64,
            max_buffered_bytes: limits.max_buffered_bytes as u64,
            tick_interval_ms: limits.tick_interval_ms,
        },
    };
    limit.store(usize::MAX, Ordering::Relaxed);
    tracing::info!(
        %ip, conn = %conn_id, client = params.client.id.as_str(), mode = params.client.mode.as_str(),
        role = accepted.role.as_str(), protocol = accepted.protocol, auth = accepted.method.as_str(), "connected"
    );
    let open = sink
        .send(Message::text(encode_res_ok(&req_id, &hello)))
        .await
        .is_ok();

    Some(Established {
        conn,
        rx,
        sink,
        stream,
        conn_id,
        open,
    })
}

/// The request / event loop of an established connection.
async fn run(hub: Arc<Hub>, est: Established) {
    let Established {
        conn,
        mut rx,
        mut sink,
        mut stream,
        conn_id,
        mut open,
    } = est;
    let mut role_violations = 0u32;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    while open {
        tokio::select! {
            biased;
            _ = conn.closing.notified() => {
                // Flush what was queued before the close request (e.g. `shutdown`).
                while let Ok(Outbound::Frame(f)) = rx.try_recv() {
                    if sink.send(Message::text(f)).await.is_err() {
                        break;
                    }
                }
                let (code, reason) = conn.close_request().unwrap_or((close::NORMAL, String::new()));
                let _ = sink.send(close_msg(code, &reason)).await;
                open = false;
            }
            out = rx.recv() => match out {
                Some(Outbound::Frame(f)) => open = sink.send(Message::text(f)).await.is_ok(),
                None => open = false,
            },
            msg = stream.next() => match msg {
                None => open = false,
                Some(Ok(Message::Close(_))) => {
                    // Complete the close handshake: tungstenite queued our reply, flush it.
                    let _ = sink.close().await;
                    open = false;
                }
                Some(Err(e)) => {
                    if is_over_limit(&e) {
                        let _ = sink.send(close_msg(close::TOO_BIG, "max payload size exceeded")).await;
                    }
                    open = false;
                }
                Some(Ok(Message::Text(t))) => {
                    let res = match decode_request(t.as_str()) {
                        Err(DecodeError::NotJson(_)) => {
                            tracing::debug!(conn = %conn_id, "ignoring non-JSON frame");
                            continue;
                        }
                        Err(DecodeError::InvalidParams { id, method, .. }) if method == "connect" => {
                            encode_res_err(&id, &ErrorShape::invalid("connect is only valid as the first request"))
                        }
                        Err(e) => encode_res_err(e.reply_id(), &ErrorShape::invalid(e.message())),
                        Ok(req) => {
                            let id = req.id.clone();
                            let generation = hub.devices.generation();
                            let (reply, refusal) = methods::dispatch(&hub, &conn, req);
                            if refusal == Refusal::Role {
                                role_violations += 1;
                            } else {
                                role_violations = 0;
                            }
                            match reply {
                                Dispatch::Now(r) => {
                                    // A reply about a trust change goes out once it is on disk.
                                    let r = if hub.devices.generation() != generation {
                                        match hub.devices.durable().await {
                                            Ok(()) => r,
                                            Err(e) => Err(ErrorShape::unavailable(format!("not saved: {e}"))),
                                        }
                                    } else {
                                        r
                                    };
                                    encode_reply(&id, r)
                                }
                                Dispatch::Later(fut) => match in_flight.clone().try_acquire_owned() {
                                    Ok(permit) => {
                                        // Answered when ready, through the outbound queue.
                                        let conn = conn.clone();
                                        tokio::spawn(async move {
                                            let frame = encode_reply(&id, fut.await);
                                            conn.send(Outbound::Frame(frame)).await;
                                            drop(permit);
                                        });
                                        continue;
                                    }
                                    Err(_) => encode_res_err(
                                        &id,
                                        &ErrorShape::unavailable("too many requests in flight on this connection").retry_after(500),
                                    ),
                                },
                            }
                        }
                    };
                    open = sink.send(Message::text(res)).await.is_ok();
                    if role_violations >= MAX_ROLE_VIOLATIONS {
                        let _ = sink.send(close_msg(close::POLICY_VIOLATION, close::reason::REPEATED_UNAUTHORIZED)).await;
                        open = false;
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    hub.unregister(&conn);
    tracing::info!(conn = %conn_id, "disconnected");
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
