//! One connection's life, as bytes: upgrade, `connect.challenge`, the first frame, the answer
//! [`admit`] decided on, then a reader and a writer that proceed independently.
//!
//! * Before `hello-ok` every read and write is under the handshake deadline, and reads are
//!   capped at 64 KiB (plus the upgrade) by [`Limited`](crate::upgrade::Limited).
//! * After it, the **reader** decodes requests and queues replies into the connection's
//!   [`Outbox`](pincer_os::outbox::Outbox); the **writer** drains the outbox onto the socket. They
//!   are two futures polled side by side, so a peer that stops reading stalls only the writer:
//!   reading, ticks and close requests go on, the outbox fills to its byte budget and the
//!   connection is closed as a slow consumer. A write that makes no progress for
//!   [`write_deadline`](pincer_os::outbox::write_deadline) closes it too.
//! * Every close (ours or the peer's) gets [`CLOSE_GRACE`] to flush, then the socket is dropped.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pincer_protocol::close;
use pincer_protocol::decode::{decode_request, DecodeError, Params};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::{encode_event_raw, encode_res_err, encode_res_ok};
use tokio::net::TcpStream;

use crate::tls;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::admit::admit;
use crate::conn::ConnHandle;
use crate::handshake::Rejected;
use crate::hub::Hub;
use crate::methods::{self, Dispatch, Refusal};
use crate::tailscale::ingress::Ingress;
use crate::upgrade::{is_bad_utf8, is_over_limit, ReadCaps, Ws, UPGRADE_ALLOWANCE};
use crate::{now_ms, secret};
use pincer_os::outbox::write_deadline;

/// Deferred requests (node invokes) one connection may have open at once.
const MAX_IN_FLIGHT: usize = 64;
/// Consecutive role violations before the socket is closed.
const MAX_ROLE_VIOLATIONS: u32 = 10;
/// Time a closing connection gets to flush its queued frames and the close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

fn encode_reply(id: &str, r: methods::Reply) -> String {
    match r {
        Ok(payload) => pincer_protocol::frames::encode_res_ok_raw(id, &payload),
        Err(e) => encode_res_err(id, &e),
    }
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: close::truncate_reason(reason).to_owned().into(),
    }))
}

/// Serves one accepted TCP connection until it closes: the handshake (boxed, so its larger
/// state is freed once the client is in), then the reader and writer, whose state is all an
/// idle connection keeps. The caller took a pre-auth slot for `ip`; it is returned when the
/// handshake ends, whichever way (or when the task is dropped).
pub async fn serve(hub: Arc<Hub>, tcp: TcpStream, ip: IpAddr, ingress: Ingress) {
    let slot = PreauthSlot { hub: &hub, ip };
    let est = Box::pin(establish(&hub, tcp, ip, ingress)).await;
    drop(slot);
    if let Some((conn, ws)) = est {
        run(&hub, &conn, ws).await;
        hub.unregister(&conn);
        tracing::info!(conn = %conn.conn_id, "disconnected");
    }
}

/// A pre-auth slot of `ip`, given back to the hub when dropped.
struct PreauthSlot<'a> {
    hub: &'a Hub,
    ip: IpAddr,
}

impl Drop for PreauthSlot<'_> {
    fn drop(&mut self) {
        self.hub.preauth.release(self.ip);
    }
}

/// The pre-auth side of a socket: everything bounded by one deadline.
struct Preauth {
    ws: Ws,
    deadline: Instant,
}

impl Preauth {
    /// Sends `msg` before the deadline; false when it could not.
    async fn send(&mut self, msg: Message) -> bool {
        matches!(
            timeout_at(self.deadline, self.ws.send(msg)).await,
            Ok(Ok(()))
        )
    }

    /// Sends an error response (when there is a request id to answer) and the close.
    async fn refuse(&mut self, res: Option<String>, code: u16, reason: &str) {
        if let Some(res) = res {
            if !self.send(Message::text(res)).await {
                return;
            }
        }
        self.send(close_msg(code, reason)).await;
    }

    /// The first text frame; `None` when the client left, stalled or broke a limit (it has
    /// been told, where it can be).
    async fn first_text(&mut self, ip: IpAddr, max: usize) -> Option<String> {
        loop {
            match timeout_at(self.deadline, self.ws.next()).await {
                Err(_) => {
                    tracing::debug!(%ip, "handshake timeout");
                    self.refuse(None, close::NORMAL, "handshake timeout").await;
                    return None;
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Err(e))) => {
                    if is_over_limit(&e) {
                        self.refuse(None, close::TOO_BIG, close::reason::PREAUTH_TOO_LARGE)
                            .await;
                    } else if is_bad_utf8(&e) {
                        self.refuse(None, close::INVALID_PAYLOAD, "invalid UTF-8")
                            .await;
                    }
                    return None;
                }
                Ok(Some(Ok(Message::Text(t)))) if t.len() > max => {
                    self.refuse(None, close::TOO_BIG, close::reason::PREAUTH_TOO_LARGE)
                        .await;
                    return None;
                }
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Binary(_)))) => {
                    self.refuse(None, close::NORMAL, "").await;
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// Upgrade, challenge, `connect`, admission and `hello-ok`; `None` when the client did not get
/// in (it has been answered and closed, as far as it reads within the deadline).
async fn establish(
    hub: &Arc<Hub>,
    tcp: TcpStream,
    ip: IpAddr,
    ingress: Ingress,
) -> Option<(Arc<ConnHandle>, Ws)> {
    let limits = hub.config.limits;
    let caps = ReadCaps::new(limits.preauth_max_payload + UPGRADE_ALLOWANCE, usize::MAX);
    let deadline = Instant::now() + Duration::from_millis(limits.handshake_timeout_ms);
    let _ = tcp.set_nodelay(true);
    // A peer that vanished (its Wi-Fi gone, its tailscaled killed) stops acknowledging our
    // ticks: the kernel closes the socket after this long instead of after ~15 minutes of
    // retransmissions, so the node is shown gone and an invoke is refused, not left waiting.
    let _ = socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(unacked_limit(&limits)));
    // With `[tls]` the TLS handshake comes first, within the same pre-auth deadline.
    let stream = match hub.tls.get() {
        None => tls::Stream::Plain(tcp),
        Some(tls) => match timeout_at(deadline, tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%ip, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%ip, "TLS handshake timeout");
                return None;
            }
        },
    };
    let (ws, peer, deadline) =
        crate::http::front(hub, stream, ip, ingress, caps.clone(), deadline).await?;
    let mut pre = Preauth { ws, deadline };

    let nonce = secret::uuid_v4();
    let challenge = encode_event_raw(
        "connect.challenge",
        &format!(r#"{{"nonce":"{nonce}","ts":{}}}"#, now_ms()),
        None,
        None,
    );
    if !pre.send(Message::text(challenge)).await {
        return None;
    }
    let first = pre.first_text(ip, limits.preauth_max_payload).await?;
    let (req_id, params) = match decode_connect(&first) {
        Ok(c) => c,
        Err((res, code, reason)) => {
            pre.refuse(res, code, &reason).await;
            return None;
        }
    };
    match admit(hub, &params, &nonce, &peer).await {
        Ok(a) => {
            caps.admitted(a.hello.policy.max_payload as usize);
            if pre
                .send(Message::text(encode_res_ok(&req_id, &a.hello)))
                .await
            {
                Some((a.conn, pre.ws))
            } else {
                // Closed before detaching: a racing invoke is refused, never left waiting.
                a.conn.outbox.close();
                hub.unregister(&a.conn);
                None
            }
        }
        Err(Rejected {
            error,
            close_code,
            close_reason,
            ..
        }) => {
            let res = encode_res_err(&req_id, &error);
            pre.refuse(Some(res), close_code, &close_reason).await;
            None
        }
    }
}

/// How long sent bytes may stay unacknowledged before the socket is given up: two tick
/// intervals and 10 s (70 s with the default 30 s ticks).
pub fn unacked_limit(limits: &crate::config::Limits) -> Duration {
    Duration::from_millis(limits.tick_interval_ms.saturating_mul(2)) + Duration::from_secs(10)
}

/// A refusal of the first frame: the response to send (if any), the close code and reason.
type FirstFrameRefusal = (Option<String>, u16, String);

/// The first frame as a `connect` request: its id and params, or what to answer.
fn decode_connect(
    first: &str,
) -> Result<(String, pincer_protocol::connect::ConnectParams), FirstFrameRefusal> {
    let policy = |id: &str, message: &str, reason: &str| {
        (
            Some(encode_res_err(id, &ErrorShape::invalid(message))),
            close::POLICY_VIOLATION,
            reason.to_owned(),
        )
    };
    match decode_request(first) {
        Err(DecodeError::NotJson(_)) => Err((None, close::NORMAL, String::new())),
        Ok(r) => match r.params {
            Params::Connect(p) => Ok((r.id, *p)),
            _ => {
                let m = close::reason::FIRST_MUST_BE_CONNECT;
                Err(policy(&r.id, m, m))
            }
        },
        Err(e) => Err(match &e {
            DecodeError::InvalidParams {
                method, message, ..
            } if method == "connect" => {
                let m = format!("invalid connect params: {message}");
                policy(e.reply_id(), &m, &m)
            }
            DecodeError::InvalidParams { .. } => {
                let m = close::reason::FIRST_MUST_BE_CONNECT;
                policy(e.reply_id(), m, m)
            }
            _ => policy(e.reply_id(), &e.message(), close::reason::INVALID_FRAME),
        }),
    }
}

/// How the reader stopped.
enum ReadEnd {
    /// The peer sent a close frame (tungstenite queued the reply).
    PeerClosed,
    /// The socket is gone (EOF, reset, protocol error): nothing more can be sent.
    Gone,
    /// We close: `ConnHandle::kill` was called with the code and reason.
    Closing,
}

/// The established connection: reader and writer side by side until either ends, then the
/// close, bounded by [`CLOSE_GRACE`].
async fn run(hub: &Arc<Hub>, conn: &Arc<ConnHandle>, ws: Ws) {
    let (mut sink, mut stream) = ws.split();
    let ended = {
        let reader = read_frames(hub, conn, &mut stream);
        let writer = write_frames(conn, &mut sink);
        tokio::pin!(reader, writer);
        // Reader first: a reply it queues is taken by the writer in the same pass, without
        // another trip through the scheduler.
        tokio::select! {
            biased;
            end = &mut reader => Some(end),
            alive = &mut writer => alive.then_some(ReadEnd::Closing),
        }
    };
    match ended {
        // The writer failed or timed out: the socket is of no more use.
        None | Some(ReadEnd::Gone) => {}
        Some(ReadEnd::PeerClosed) => {
            let _ = timeout(CLOSE_GRACE, sink.close()).await;
        }
        Some(ReadEnd::Closing) => {
            let (code, reason) = conn
                .close_request()
                .unwrap_or((close::NORMAL, String::new()));
            let _ = timeout(CLOSE_GRACE, async {
                // Flush what was queued before the close request (e.g. `shutdown`).
                while let Some(f) = conn.outbox.try_next() {
                    sink.send(Message::text(f)).await?;
                    conn.outbox.sent();
                }
                sink.send(close_msg(code, &reason)).await
            })
            .await;
        }
    }
    conn.outbox.close();
}

/// Drains the outbox onto the socket until the connection is killed (`true`) or a write fails
/// or misses its deadline (`false`).
async fn write_frames(conn: &ConnHandle, sink: &mut Sink) -> bool {
    loop {
        let frame = tokio::select! {
            biased;
            _ = conn.killed() => return true,
            f = conn.outbox.next() => match f {
                Some(f) => f,
                None => return true,
            },
        };
        let deadline = write_deadline(frame.len());
        let written = tokio::select! {
            biased;
            _ = conn.killed() => return true,
            r = timeout(deadline, sink.send(Message::text(frame))) => r,
        };
        conn.outbox.sent();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(conn = %conn.conn_id, error = %e, "write failed");
                return false;
            }
            Err(_) => {
                tracing::warn!(conn = %conn.conn_id, "peer stopped reading (write deadline); closing");
                return false;
            }
        }
    }
}

/// Reads and answers requests until the peer leaves or the connection must close.
async fn read_frames(hub: &Arc<Hub>, conn: &Arc<ConnHandle>, stream: &mut Stream) -> ReadEnd {
    let mut role_violations = 0u32;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let msg = tokio::select! {
            biased;
            _ = conn.killed() => return ReadEnd::Closing,
            m = stream.next() => m,
        };
        let text = match msg {
            None => return ReadEnd::Gone,
            Some(Ok(Message::Close(_))) => return ReadEnd::PeerClosed,
            Some(Err(e)) => {
                if is_over_limit(&e) {
                    conn.kill(close::TOO_BIG, "max payload size exceeded");
                    return ReadEnd::Closing;
                }
                if is_bad_utf8(&e) {
                    conn.kill(close::INVALID_PAYLOAD, "invalid UTF-8");
                    return ReadEnd::Closing;
                }
                return ReadEnd::Gone;
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
        };
        // The reply's place comes before any event that handling the request causes.
        let slot = conn.outbox.reserve();
        let reply = match decode_request(text.as_str()) {
            Err(DecodeError::NotJson(_)) => {
                tracing::debug!(conn = %conn.conn_id, "ignoring non-JSON frame");
                conn.outbox.cancel(slot);
                continue;
            }
            Err(DecodeError::InvalidParams { id, method, .. }) if method == "connect" => {
                encode_res_err(
                    &id,
                    &ErrorShape::invalid("connect is only valid as the first request"),
                )
            }
            Err(e) => encode_res_err(e.reply_id(), &ErrorShape::invalid(e.message())),
            Ok(req) => {
                let id = req.id.clone();
                let generation = hub.devices.generation();
                let (dispatch, refusal) = methods::dispatch(hub, conn, req);
                if refusal == Refusal::Role {
                    role_violations += 1;
                } else {
                    role_violations = 0;
                }
                match dispatch {
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
                    Dispatch::Twice(fut) => match in_flight.clone().try_acquire_owned() {
                        Ok(permit) => {
                            conn.outbox.cancel(slot);
                            let conn = conn.clone();
                            tokio::spawn(async move {
                                let (first, rest) = fut.await;
                                if let Some(r) = first {
                                    conn.send_or_close(encode_reply(&id, r));
                                }
                                if let Some(rest) = rest {
                                    conn.send_or_close(encode_reply(&id, rest.await));
                                }
                                drop(permit);
                            });
                            continue;
                        }
                        Err(_) => encode_res_err(
                            &id,
                            &ErrorShape::unavailable(
                                "too many requests in flight on this connection",
                            )
                            .retry_after(500),
                        ),
                    },
                    Dispatch::Later(fut) => match in_flight.clone().try_acquire_owned() {
                        Ok(permit) => {
                            conn.outbox.cancel(slot);
                            // Answered when ready, through the outbox.
                            let conn = conn.clone();
                            tokio::spawn(async move {
                                let frame = encode_reply(&id, fut.await);
                                conn.send_or_close(frame);
                                drop(permit);
                            });
                            continue;
                        }
                        Err(_) => encode_res_err(
                            &id,
                            &ErrorShape::unavailable(
                                "too many requests in flight on this connection",
                            )
                            .retry_after(500),
                        ),
                    },
                }
            }
        };
        if !conn.reply(slot, reply) {
            return ReadEnd::Closing;
        }
        if role_violations >= MAX_ROLE_VIOLATIONS {
            conn.kill(
                close::POLICY_VIOLATION,
                close::reason::REPEATED_UNAUTHORIZED,
            );
            return ReadEnd::Closing;
        }
    }
}
