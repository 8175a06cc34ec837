//! The node's link to its gateway: connect, answer the challenge, `connect` as `node-host`,
//! serve invokes, and when anything ends the connection — gateway restart, Wi-Fi loss, a tick
//! watchdog, pairing not yet approved — try again after a backoff. Only one socket is open at
//! a time: the old one is closed before a new one is dialled.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pincer_os::outbox::Outbox;
use pincer_protocol::connect::HelloOk;
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::Frame;
use pincer_protocol::identity::{signature_token, SignedFields};
use pincer_protocol::methods::NodeInvokeRequest;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::config::{Credential, NodeConfig};
use crate::identity::Identity;
use crate::invoke::{Dispatcher, Out};
use crate::watchdog::Watchdog;

/// How long the gateway has to send `connect.challenge`, then to answer `connect`.
const HANDSHAKE_STEP: Duration = Duration::from_secs(10);
/// A connection that stayed up this long (after hello-ok) resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Frames queued for the socket…
const OUTBOUND_FRAMES: usize = 64;
/// …and their bytes: a few results of the largest size the gateway accepts. Past it the
/// gateway is not reading and the link is closed.
const OUTBOUND_BYTES: usize = 64 * 1024 * 1024;
/// Time the close frame gets when the node ends a connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The node's own requests remembered for matching their `res` (oldest forgotten first).
const PENDING_REQUESTS: usize = 256;

/// The node's own requests in flight: id and method, to match the gateway's `res`.
type Pending = Mutex<VecDeque<(String, &'static str)>>;

/// How one connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The node is stopping.
    Shutdown,
    /// Pairing needed: an operator must approve `request_id`.
    PairingRequired { request_id: String },
    /// Refused for another reason (`details.code` and message).
    Refused { code: String, message: String },
    /// Network or protocol trouble.
    Lost(String),
}

/// Everything the node needs to connect.
pub struct Node {
    pub config: NodeConfig,
    pub identity: Identity,
    pub dispatcher: Arc<Dispatcher>,
    device_family: String,
    model: Option<String>,
}

/// The socket to the gateway.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

async fn next_frame(ws: &mut Ws, within: Duration) -> Result<Frame, Ended> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(Ended::Lost("gateway did not answer in time".into())),
            Ok(None) => return Err(Ended::Lost("connection closed".into())),
            Ok(Some(Err(e))) => return Err(Ended::Lost(e.to_string())),
            Ok(Some(Ok(Message::Close(c)))) => {
                return Err(Ended::Lost(format!(
                    "closed: {}",
                    c.map(|c| format!("{} {}", u16::from(c.code), c.reason))
                        .unwrap_or_default()
                )))
            }
            Ok(Some(Ok(Message::Text(t)))) => match Frame::decode(t.as_str()) {
                Ok(f) => return Ok(f),
                Err(e) => tracing::debug!(error = %e, "ignoring a frame that does not decode"),
            },
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Largest frame the node accepts from whatever it dialled: the gateway's own cap on frames
/// (25 MiB by default) plus the JSON around an invoke's params. tungstenite would take 64 MiB.
pub const MAX_FRAME: usize = 26 * 1024 * 1024 + 64 * 1024;

fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(MAX_FRAME);
    c.max_frame_size = Some(MAX_FRAME);
    c
}

/// Dials `url`: TLS for `wss://` (trusting only the certificate with SHA-256 `pin` when one is
/// given), plain TCP for `ws://`.
pub async fn dial(url: &str, pin: Option<&str>) -> Result<Ws, String> {
    #[cfg(feature = "tls")]
    {
        let connector = if url.starts_with("wss://") {
            Some(crate::tls::connector(pin)?)
        } else {
            None
        };
        tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config()), true, connector)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = pin;
        if url.starts_with("wss://") {
            return Err("this build has no TLS support (feature `tls`)".into());
        }
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string())
    }
}

/// Dials `url` and waits for `connect.challenge` (what `pincer-node doctor` checks): proves a
/// gateway speaking this protocol answers, without connecting as the node.
pub async fn probe(url: &str, pin: Option<&str>) -> Result<(), String> {
    let mut ws = tokio::time::timeout(HANDSHAKE_STEP, dial(url, pin))
        .await
        .map_err(|_| "timed out".to_owned())??;
    let result = loop {
        match next_frame(&mut ws, HANDSHAKE_STEP).await {
            Ok(Frame::Event(e)) if e.event.as_str() == "connect.challenge" => break Ok(()),
            Ok(_) => continue,
            Err(Ended::Lost(why)) => break Err(format!("no connect.challenge: {why}")),
            Err(other) => break Err(format!("{other:?}")),
        }
    };
    let _ = ws.close(None).await;
    result
}

impl Node {
    pub fn new(config: NodeConfig, identity: Identity, dispatcher: Arc<Dispatcher>) -> Node {
        let (device_family, model) = crate::board::identify();
        Node {
            config,
            identity,
            dispatcher,
            device_family,
            model,
        }
    }

    /// Connects and reconnects until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            let mut connected_at = None;
            let ended = self.session(&mut shutdown, &mut connected_at).await;
            match &ended {
                Ended::Shutdown => return,
                Ended::PairingRequired { request_id } => tracing::warn!(
                    %request_id, device_id = %self.identity.device_id,
                    "waiting for approval: run `pincer-gateway devices approve {}` or `openclaw devices approve {}` on the gateway",
                    &request_id.chars().filter(|c| c.is_ascii_hexdigit()).take(8).collect::<String>().to_ascii_uppercase(),
                    request_id
                ),
                Ended::Refused { code, message } => {
                    tracing::warn!(%code, "gateway refused the node: {message}")
                }
                Ended::Lost(why) => tracing::info!("disconnected: {why}"),
            }
            if connected_at.is_some_and(|t: tokio::time::Instant| t.elapsed() >= STABLE) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    fn connect_params(&self, nonce: &str) -> (Value, bool) {
        let stored = self.identity.device_token("node");
        let (token, bootstrap, using_stored) = match &self.config.credential {
            Credential::Token(t) => (Some(t.clone()), None, false),
            Credential::SetupCode(code) => match &stored {
                Some(t) => (Some(t.clone()), None, true),
                None => (None, Some(code.clone()), false),
            },
            Credential::None => (stored.clone(), None, stored.is_some()),
        };
        let registry = self.dispatcher.registry();
        let signed_at = crate::now_ms();
        let scopes: [&str; 0] = [];
        let fields = SignedFields {
            device_id: &self.identity.device_id,
            client_id: "node-host",
            client_mode: "node",
            role: "node",
            scopes: &scopes,
            signed_at_ms: signed_at,
            token: signature_token(token.as_deref(), None, bootstrap.as_deref()),
            nonce,
            platform: "linux",
            device_family: &self.device_family,
        };
        let mut auth = serde_json::Map::new();
        if let Some(t) = &token {
            auth.insert("token".into(), json!(t));
        }
        if let Some(b) = &bootstrap {
            auth.insert("bootstrapToken".into(), json!(b));
        }
        let mut client = json!({
            "id": "node-host", "displayName": self.config.name, "version": crate::VERSION,
            "platform": "linux", "deviceFamily": self.device_family, "mode": "node",
            "instanceId": self.identity.instance_id,
        });
        if let Some(m) = &self.model {
            client["modelIdentifier"] = json!(m);
        }
        let params = json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": client,
            "role": "node", "scopes": [],
            "caps": registry.caps(), "commands": registry.names(),
            "pathEnv": std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            "auth": auth,
            "device": {
                "id": self.identity.device_id, "publicKey": self.identity.public_key,
                "signature": fields.sign_v3(&self.identity.key).as_str(),
                "signedAt": signed_at, "nonce": nonce,
            },
        });
        (params, using_stored)
    }

    /// What a refused `connect` means for the reconnect loop.
    fn refusal(&self, error: Option<ErrorShape>, using_stored: bool) -> Ended {
        let err = error.unwrap_or_else(|| ErrorShape::invalid("refused"));
        let code = err.detail_code().unwrap_or(&err.code).to_owned();
        if code == "PAIRING_REQUIRED" || err.code == "NOT_PAIRED" {
            let request_id = err
                .details
                .as_ref()
                .and_then(|d| d["requestId"].as_str())
                .unwrap_or("")
                .to_owned();
            return Ended::PairingRequired { request_id };
        }
        if using_stored && code.starts_with("AUTH_") {
            tracing::warn!("stored device token refused; forgetting it");
            self.identity.clear_device_token("node");
        }
        Ended::Refused {
            code,
            message: err.message,
        }
    }

    /// One connection, from dial to close; `connected_at` is set on hello-ok.
    async fn session(
        &self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
        connected_at: &mut Option<tokio::time::Instant>,
    ) -> Ended {
        let url = self.config.gateway.as_str();
        let ws = tokio::select! {
            r = tokio::time::timeout(HANDSHAKE_STEP, dial(url, self.config.tls_fingerprint.as_deref())) => r,
            _ = &mut *shutdown => return Ended::Shutdown,
        };
        let mut ws = match ws {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return Ended::Lost(format!("cannot reach {url}: {e}")),
            Err(_) => return Ended::Lost(format!("cannot reach {url}: timed out")),
        };
        let nonce = loop {
            match next_frame(&mut ws, HANDSHAKE_STEP).await {
                Err(e) => return e,
                Ok(Frame::Event(e)) if e.event.as_str() == "connect.challenge" => {
                    match e
                        .payload
                        .as_ref()
                        .and_then(|p| p["nonce"].as_str())
                        .filter(|n| !n.trim().is_empty())
                    {
                        Some(n) => break n.trim().to_owned(),
                        None => {
                            let _ = ws
                                .send(close_frame(1008, "connect challenge missing nonce"))
                                .await;
                            return Ended::Lost("challenge without a nonce".into());
                        }
                    }
                }
                Ok(_) => continue,
            }
        };
        let (params, using_stored) = self.connect_params(&nonce);
        let connect =
            json!({ "type": "req", "id": "connect", "method": "connect", "params": params });
        if let Err(e) = ws.send(Message::text(connect.to_string())).await {
            return Ended::Lost(e.to_string());
        }
        let hello: HelloOk = loop {
            match next_frame(&mut ws, HANDSHAKE_STEP).await {
                Err(e) => return e,
                Ok(Frame::Res(r)) if r.id.as_str() == "connect" => {
                    if r.ok {
                        match serde_json::from_value(r.payload.unwrap_or(Value::Null)) {
                            Ok(h) => break h,
                            Err(e) => return Ended::Lost(format!("bad hello-ok: {e}")),
                        }
                    }
                    let ended = self.refusal(r.error, using_stored);
                    // Answer the gateway's close instead of dropping the socket.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        ws.close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        })),
                    )
                    .await;
                    return ended;
                }
                Ok(_) => continue,
            }
        };
        if let Some(token) = hello.auth.as_ref().and_then(|a| a.device_token.as_ref()) {
            if let Err(e) = self.identity.save_device_token("node", token) {
                tracing::error!(error = %e, "could not save the device token");
            }
        }
        *connected_at = Some(tokio::time::Instant::now());
        self.dispatcher
            .set_max_payload(hello.policy.max_payload as usize);
        tracing::info!(
            gateway = %url, protocol = hello.protocol, node_id = %self.identity.device_id,
            commands = ?self.dispatcher.registry().names(), "connected"
        );
        self.serve(ws, hello.policy.tick_interval_ms, shutdown)
            .await
    }

    async fn serve(
        &self,
        ws: Ws,
        tick_ms: u64,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Ended {
        let out: Out = Arc::new(Outbox::new(OUTBOUND_FRAMES, OUTBOUND_BYTES));
        let ended = self.serve_frames(ws, tick_ms, &out, shutdown).await;
        out.close();
        // The gateway fails this connection's invokes itself; stop their commands too.
        let aborted = self.dispatcher.abort_all();
        if aborted > 0 {
            tracing::info!(aborted, "stopped the commands of the closed connection");
        }
        ended
    }

    /// The reader, the writer and the watchdog side by side: none waits for another, so a
    /// gateway that stops reading cannot stop the node from reading, noticing a dead link or
    /// shutting down. Whatever ends it, the close frame gets [`CLOSE_GRACE`].
    async fn serve_frames(
        &self,
        ws: Ws,
        tick_ms: u64,
        out: &Out,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Ended {
        let (mut tx, mut rx) = ws.split();
        let last_frame = Mutex::new(tokio::time::Instant::now());
        let pending: Pending = Mutex::new(VecDeque::new());
        let node_id = self.identity.device_id.clone();
        let (ended, close) = {
            let reader = self.read_frames(&mut rx, &node_id, out, &pending, &last_frame);
            let writer = write_frames(&mut tx, out, &pending);
            let watchdog = async {
                let mut dog = Watchdog::new(tick_ms);
                loop {
                    dog.fed_at(*last_frame.lock().unwrap_or_else(|p| p.into_inner()));
                    if dog.expired() {
                        return;
                    }
                    tokio::time::sleep_until(dog.deadline()).await;
                }
            };
            tokio::pin!(reader, writer, watchdog);
            tokio::select! {
                _ = &mut *shutdown => (Ended::Shutdown, Some((1000, "node stopping"))),
                _ = &mut watchdog => (
                    Ended::Lost("tick timeout: no frame from the gateway for two tick intervals".into()),
                    Some((4000, "tick timeout")),
                ),
                e = &mut writer => (e, None),
                e = &mut reader => (e, None),
            }
        };
        if let Some((code, reason)) = close {
            let _ = tokio::time::timeout(CLOSE_GRACE, tx.send(close_frame(code, reason))).await;
        }
        ended
    }

    /// Reads frames until the gateway closes or the socket breaks; `last_frame` is fed by every
    /// frame.
    async fn read_frames(
        &self,
        rx: &mut SplitStream<Ws>,
        node_id: &str,
        out: &Out,
        pending: &Pending,
        last_frame: &Mutex<tokio::time::Instant>,
    ) -> Ended {
        loop {
            let msg = rx.next().await;
            *last_frame.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
            let text = match msg {
                None => return Ended::Lost("connection closed".into()),
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                Some(Ok(Message::Close(c))) => {
                    return Ended::Lost(format!(
                        "closed: {}",
                        c.map(|c| format!("{} {}", u16::from(c.code), c.reason))
                            .unwrap_or_default()
                    ))
                }
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
            };
            // Only the envelope is decoded; a payload stays raw text unless it is an invoke.
            match serde_json::from_str::<Inbound>(text.as_str()) {
                Ok(f) if f.kind == "event" => self.on_event(
                    f.event.as_deref().unwrap_or(""),
                    f.payload.as_deref(),
                    node_id,
                    out,
                ),
                Ok(f) if f.kind == "res" => {
                    let id = f.id.unwrap_or_default();
                    let method = {
                        let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                        p.iter()
                            .position(|(pid, _)| *pid == id)
                            .and_then(|i| p.remove(i))
                            .map(|(_, m)| m)
                    };
                    match (method, f.ok == Some(true)) {
                        (Some(_), true) => {}
                        (Some(method), false) => tracing::warn!(
                            %id, %method,
                            "gateway refused the node's request: {}",
                            f.error.map(|e| format!("{} {}", e.code, e.message)).unwrap_or_default()
                        ),
                        (None, _) => tracing::debug!(%id, "response to no request of ours"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "ignoring a frame that does not decode"),
            }
        }
    }

    /// Gateway events: invokes and cancels; everything else (tick, presence, health,
    /// voicewake.changed, …) only feeds the watchdog.
    fn on_event(&self, event: &str, payload: Option<&RawValue>, node_id: &str, out: &Out) {
        let raw = payload.map_or("null", RawValue::get);
        match event {
            "node.invoke.request" => match serde_json::from_str::<NodeInvokeRequest>(raw) {
                Ok(req) => self.dispatcher.dispatch(req, node_id, out),
                Err(err) => {
                    tracing::warn!(error = %err, "malformed node.invoke.request");
                    let invoke_id = serde_json::from_str::<IdOf>(raw).ok().and_then(|i| i.id);
                    if let Some(id) = invoke_id {
                        self.dispatcher.reject(
                            &id,
                            node_id,
                            format!("malformed node.invoke.request: {err}"),
                            out,
                        );
                    }
                }
            },
            "node.invoke.cancel" => {
                let cancel = serde_json::from_str::<CancelOf>(raw).ok();
                if let Some(id) = cancel.and_then(|c| c.invoke_id) {
                    if !self.dispatcher.cancel(&id, node_id, out) {
                        tracing::debug!(invoke_id = %id, "cancel for an invoke that is not running");
                    }
                }
            }
            _ => {}
        }
    }
}

/// A frame from the gateway as far as the node reads it: the envelope, the payload as raw text
/// (decoded only for the events the node acts on), the error of a refused request.
#[derive(Deserialize)]
struct Inbound {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorShape>,
}

/// The id of a `node.invoke.request` that does not decode as a whole.
#[derive(Deserialize)]
struct IdOf {
    id: Option<String>,
}

/// `node.invoke.cancel`'s payload.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelOf {
    invoke_id: Option<String>,
}

/// Drains the outbox onto the socket; ends when a write fails or stalls past its deadline, or
/// when the outbox was closed (over budget: the gateway is not reading).
async fn write_frames(tx: &mut SplitSink<Ws, Message>, out: &Out, pending: &Pending) -> Ended {
    while let Some(frame) = out.next().await {
        {
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() >= PENDING_REQUESTS {
                p.pop_front();
            }
            p.push_back((frame.id, frame.method));
        }
        let deadline = pincer_os::outbox::write_deadline(frame.text.len());
        let written = tokio::time::timeout(deadline, tx.send(Message::text(frame.text))).await;
        out.sent();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Err(_) => return Ended::Lost("the gateway stopped reading (write deadline)".into()),
        }
    }
    Ended::Lost("the gateway stopped reading (outbound queue over budget)".into())
}
