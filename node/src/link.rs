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
use pincer_client::dial::Dial;
use pincer_client::hello::{self, Hello};
use pincer_client::identity::{Identity, IdentityError, IdentityFiles};
use pincer_client::{ClientError, Ws};
use pincer_os::outbox::Outbox;
use pincer_protocol::error::ErrorShape;
use pincer_protocol::methods::NodeInvokeRequest;
use pincer_protocol::text::NonEmpty;
use pincer_protocol::weight::json_values;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::commands::Registry;
use crate::config::{Credential, NodeConfig};
use crate::invoke::{Dispatcher, Out, MAX_PARAM_VALUES};
use crate::watchdog::Watchdog;

/// How long the gateway has to open the socket, to send `connect.challenge`, then to answer
/// `connect`.
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
    PairingRequired {
        /// `details.requestId` of the pending request (empty when the gateway sent none).
        request_id: String,
    },
    /// Refused for another reason (`details.code` and message).
    Refused {
        /// `details.code`, else the top-level `error.code`.
        code: String,
        /// `error.message`.
        message: String,
    },
    /// Network or protocol trouble.
    Lost(String),
}

/// Everything the node needs to connect.
pub struct Node {
    /// The resolved configuration.
    pub config: NodeConfig,
    /// Device key, instance id and stored device tokens.
    pub identity: Identity,
    /// Runs invokes; shared with the connection tasks.
    pub dispatcher: Arc<Dispatcher>,
    device_family: String,
    model: Option<String>,
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

/// How to dial `config`'s gateway: its URL, its certificate pin, the handshake step bound.
pub fn dial_options(config: &NodeConfig) -> Dial {
    let mut d = Dial::new(config.gateway.clone());
    d.pin = config.tls_fingerprint.clone();
    d.timeout = HANDSHAKE_STEP;
    d
}

/// Dials the gateway and waits for `connect.challenge` (what `pincer-node doctor` checks):
/// proves a gateway speaking this protocol answers, without connecting as the node.
pub async fn probe(config: &NodeConfig) -> Result<(), ClientError> {
    let mut ws = pincer_client::dial::dial(&dial_options(config)).await?;
    let result = hello::challenge(&mut ws, HANDSHAKE_STEP).await.map(|_| ());
    let _ = ws.close(None).await;
    result
}

impl Node {
    /// The node `config` describes: its identity in the state dir (made on first use), the
    /// commands of its enabled capability classes.
    pub fn from_config(config: NodeConfig) -> Result<Node, IdentityError> {
        let identity = Identity::load_or_create(IdentityFiles::node(&config.state_dir))?;
        let registry = Registry::for_caps(&config.caps, &config.setup());
        Ok(Node::new(
            config,
            identity,
            Arc::new(Dispatcher::new(registry)),
        ))
    }

    /// A node with the given parts (tests swap the dispatcher's registry).
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

    /// What the node says in `connect`, and with which credential; `true` when that is the
    /// stored device token (forgotten if the gateway refuses it).
    fn hello(&self) -> (Hello, hello::Credential, bool) {
        use hello::Credential as C;
        let stored = self.identity.device_token("node");
        let (credential, using_stored) = match (&self.config.credential, stored) {
            (Credential::Token(t), _) => (C::Token(t.clone()), false),
            (Credential::SetupCode(_) | Credential::None, Some(t)) => (C::Token(t), true),
            (Credential::SetupCode(code), None) => (C::Bootstrap(code.clone()), false),
            (Credential::None, None) => (C::None, false),
        };
        let registry = self.dispatcher.registry();
        let mut h = Hello::node(&self.config.name, registry.caps(), registry.names());
        h.client.device_family = NonEmpty::new(self.device_family.clone());
        h.client.model_identifier = self.model.clone().and_then(NonEmpty::new);
        h.client.instance_id = NonEmpty::new(self.identity.instance_id.clone());
        h.path_env =
            Some(std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
        h.step_timeout = HANDSHAKE_STEP;
        (h, credential, using_stored)
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
            if let Err(e) = self.identity.clear_device_token("node") {
                tracing::error!(error = %e, "could not forget the device token");
            }
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
        let (hello, credential, using_stored) = self.hello();
        let handshake = async {
            let ws = pincer_client::dial::dial(&dial_options(&self.config)).await?;
            hello::connect(ws, &hello, Some(&self.identity), &credential).await
        };
        let connected = tokio::select! {
            r = handshake => r,
            _ = &mut *shutdown => return Ended::Shutdown,
        };
        let (ws, hello) = match connected {
            Ok(c) => c,
            Err(ClientError::Refused(e)) => return self.refusal(Some(e), using_stored),
            Err(e @ (ClientError::Dial { .. } | ClientError::Config(_))) => {
                return Ended::Lost(format!("cannot reach {url}: {e}"))
            }
            Err(e) => return Ended::Lost(e.to_string()),
        };
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
                // Over budget: the gateway is not reading. Not after the stalled write.
                _ = out.closed() => (
                    Ended::Lost("the gateway stopped reading (outbound queue over budget)".into()),
                    None,
                ),
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
            "node.invoke.request" if json_values(raw, MAX_PARAM_VALUES + 1) > MAX_PARAM_VALUES => {
                // A `params` tree this large is never built; the id alone is read.
                let invoke_id = serde_json::from_str::<IdOf>(raw).ok().and_then(|i| i.id);
                tracing::warn!(
                    bytes = raw.len(),
                    "node.invoke.request too complex to decode"
                );
                if let Some(id) = invoke_id {
                    self.dispatcher.reject(
                        &id,
                        node_id,
                        format!("params hold more than {MAX_PARAM_VALUES} JSON values"),
                        out,
                    );
                }
            }
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
