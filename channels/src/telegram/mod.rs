//! Telegram through the Bot API, long polling (no port opened at home):
//!
//! ```text
//! poll:  deleteWebhook, getMe ─▶ getUpdates(offset, timeout) ─▶ ingress.push (durable)
//!        ─▶ ingress.confirm ─▶ wake the drain            (the next poll's offset confirms)
//! drain: a record ─▶ inbound (who, where, what) ─▶ policy (DM pairing / allowlist, groups and
//!        mentions) ─▶ a turn of the agent in its session ─▶ reply (draft edited at a bounded
//!        rate, then the final text, split, as Telegram HTML; photos from tool results)
//!        ─▶ ingress.done
//! ```
//!
//! Faults: 401 stops the channel with a clear status; 409 (another poller or a webhook) and
//! 429 (`retry_after`) are shown in the status and retried; network errors back off (1 s
//! doubling to 30 s) and resume. The token never appears in logs or errors ([`api`]).

pub mod api;
pub mod config;
pub mod format;
mod inbound;
mod reply;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pincer_agent::runtime::Agent;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::ingress::{Ingress, IngressError, Limits};
use crate::pairing::Pairing;
use crate::ChannelError;
use api::{Api, ApiError};
use config::TelegramConfig;

/// What `channels.status` shows of the bot.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The poller runs.
    pub running: bool,
    /// The last Bot API call succeeded.
    pub connected: bool,
    /// The bot (`getMe`): id, username, first name.
    pub bot: Option<Value>,
    /// The last error, token-free.
    pub last_error: Option<String>,
    /// When it happened, ms.
    pub last_error_at: Option<u64>,
    /// Why the channel stopped for good (401).
    pub stopped: Option<String>,
    /// Started, ms.
    pub last_start_at: Option<u64>,
    /// Last update received, ms.
    pub last_inbound_at: Option<u64>,
    /// Last message sent, ms.
    pub last_outbound_at: Option<u64>,
    /// Last successful Bot API call, ms.
    pub last_event_at: Option<u64>,
    /// When `getMe` last succeeded, ms.
    pub last_connected_at: Option<u64>,
    /// When the poller stopped, ms.
    pub last_stop_at: Option<u64>,
    /// Failed calls in a row.
    pub reconnect_attempts: u32,
}

impl Status {
    /// The reference's `lifecycle`: `starting`, `ready`, `backoff` or `stopped`.
    pub fn lifecycle(&self) -> &'static str {
        if self.stopped.is_some() || !self.running {
            "stopped"
        } else if self.reconnect_attempts > 0 {
            "backoff"
        } else if self.connected {
            "ready"
        } else {
            "starting"
        }
    }
}

/// One bot account.
pub struct Telegram {
    pub(crate) cfg: TelegramConfig,
    pub(crate) api: Api,
    pub(crate) agent: Arc<Agent>,
    pub(crate) ingress: Ingress,
    pub(crate) pairing: Pairing,
    status: Mutex<Status>,
    wake: Notify,
    /// Room in the ingress (the drain finished a record).
    room: Notify,
    /// Runs of this account whose reply is streaming: run id → latest text.
    pub(crate) streams: Mutex<Vec<(String, tokio::sync::watch::Sender<String>)>>,
}

/// Chats answered at the same time.
pub const MAX_CHATS: usize = 4;
/// Messages waiting in one chat; more are dropped (logged, shown in the status) so that one
/// flooding chat cannot fill the ingress for everyone.
pub const MAX_PER_CHAT: usize = 50;

/// The chat an update belongs to (0 for updates without one): its ingress group.
fn chat_of(update: &Value) -> i64 {
    ["message", "edited_message", "channel_post"]
        .iter()
        .find_map(|k| update[*k]["chat"]["id"].as_i64())
        .unwrap_or(0)
}

/// The account id (one account per channel for now, as the reference's default).
pub const ACCOUNT: &str = "default";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Telegram {
    /// The account over `dir` (its ingress and pairing store live there).
    pub fn new(
        cfg: TelegramConfig,
        agent: Arc<Agent>,
        dir: &std::path::Path,
    ) -> Result<Arc<Telegram>, ChannelError> {
        let ingress = Ingress::open(&dir.join("ingress"), Limits::default())?;
        let pairing = Pairing::open(&dir.join("pairing.json"));
        let api = Api::new(agent.http().clone(), &cfg.api_root, &cfg.token);
        Ok(Arc::new(Telegram {
            cfg,
            api,
            agent,
            ingress,
            pairing,
            status: Mutex::new(Status::default()),
            wake: Notify::new(),
            room: Notify::new(),
            streams: Mutex::new(Vec::new()),
        }))
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// The pairing store.
    pub fn pairing(&self) -> &Pairing {
        &self.pairing
    }

    /// An outbound message (`send`, the `message` tool) to `chat`; the last message id.
    pub async fn send_text(&self, chat: i64, text: &str) -> Result<i64, ApiError> {
        let target = inbound::Target {
            chat_id: chat,
            thread: None,
            reply_to: 0,
        };
        reply::send(self, &target, text).await
    }

    /// `getMe` now, for `channels.status {probe:true}`: the reference's `probe` object.
    pub async fn probe(&self) -> Value {
        let t0 = std::time::Instant::now();
        match self.api.get_me().await {
            Ok(me) => json!({ "ok": true, "status": null, "error": null, "botInfo": me,
                "bot": { "id": me["id"], "isBot": me["is_bot"], "firstName": me["first_name"],
                         "username": me["username"], "canJoinGroups": me["can_join_groups"],
                         "canReadAllGroupMessages": me["can_read_all_group_messages"],
                         "supportsInlineQueries": me["supports_inline_queries"] },
                "elapsedMs": t0.elapsed().as_millis() as u64 }),
            Err(e) => {
                let status = match &e {
                    ApiError::Unauthorized => json!(401),
                    ApiError::Conflict(_) => json!(409),
                    ApiError::RetryAfter { .. } => json!(429),
                    ApiError::Refused { code, .. } => json!(code),
                    _ => Value::Null,
                };
                json!({ "ok": false, "status": status, "error": self.api.scrub(&e.to_string()),
                        "elapsedMs": t0.elapsed().as_millis() as u64 })
            }
        }
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    pub(crate) fn error(&self, e: &ApiError) {
        let text = self.api.scrub(&e.to_string());
        tracing::warn!(channel = "telegram", "{text}");
        self.set_status(|s| {
            s.connected = matches!(e, ApiError::Refused { .. } | ApiError::RetryAfter { .. });
            s.last_error = Some(text);
            s.last_error_at = Some(pincer_os::now_ms());
            s.reconnect_attempts = s.reconnect_attempts.saturating_add(1);
        });
    }

    /// A Bot API call succeeded.
    pub(crate) fn ok(&self) {
        self.set_status(|s| {
            s.connected = true;
            s.reconnect_attempts = 0;
            s.last_event_at = Some(pincer_os::now_ms());
        });
    }

    /// Runs the poller and the drain until the token is refused.
    pub async fn run(self: Arc<Self>) {
        self.set_status(|s| {
            s.running = true;
            s.last_start_at = Some(pincer_os::now_ms());
        });
        let drain = tokio::spawn(self.clone().drain());
        self.clone().poll().await;
        drain.abort();
        self.set_status(|s| {
            s.running = false;
            s.last_stop_at = Some(pincer_os::now_ms());
        });
    }

    /// `deleteWebhook` and `getMe`, retried until they answer (or the token is refused).
    async fn start(&self) -> Result<(), ()> {
        let mut backoff = Backoff::default();
        loop {
            let r = async {
                self.api
                    .call(
                        "deleteWebhook",
                        &json!({ "drop_pending_updates": false }),
                        api::CALL_TIMEOUT,
                    )
                    .await?;
                self.api.get_me().await
            }
            .await;
            match r {
                Ok(me) => {
                    tracing::info!(channel = "telegram", bot = %me["username"].as_str().unwrap_or(""), "connected");
                    self.set_status(|s| {
                        s.bot = Some(json!({ "id": me["id"], "username": me["username"], "firstName": me["first_name"] }));
                        s.last_connected_at = Some(pincer_os::now_ms());
                    });
                    self.ok();
                    return Ok(());
                }
                Err(ApiError::Unauthorized) => {
                    self.stop(&ApiError::Unauthorized);
                    return Err(());
                }
                Err(e) => {
                    self.error(&e);
                    backoff.wait(&e).await;
                }
            }
        }
    }

    fn stop(&self, e: &ApiError) {
        self.error(e);
        self.set_status(|s| {
            s.stopped = Some(e.to_string());
            s.connected = false;
        });
        tracing::error!(channel = "telegram", "stopped: {e}");
    }

    /// The bot's own user id and username (after [`Telegram::start`]).
    pub(crate) fn me(&self) -> (i64, String) {
        let s = lock(&self.status);
        let bot = s.bot.clone().unwrap_or_default();
        (
            bot["id"].as_i64().unwrap_or(0),
            bot["username"].as_str().unwrap_or("").to_owned(),
        )
    }

    async fn poll(self: Arc<Self>) {
        if self.start().await.is_err() {
            return;
        }
        let mut first = true;
        let mut backoff = Backoff::default();
        loop {
            let offset = self.ingress.offset().map(|o| o + 1);
            let timeout = if first { 0 } else { self.cfg.poll_timeout_s };
            let mut params = json!({
                "timeout": timeout, "limit": 100,
                "allowed_updates": ["message", "edited_message", "channel_post", "callback_query", "message_reaction"],
            });
            if let Some(o) = offset {
                params["offset"] = json!(o);
            }
            let deadline = Duration::from_secs(timeout + 15);
            match self.api.call("getUpdates", &params, deadline).await {
                Ok(updates) => {
                    first = false;
                    backoff = Backoff::default();
                    self.ok();
                    let list = updates.as_array().cloned().unwrap_or_default();
                    if !list.is_empty() {
                        self.set_status(|s| s.last_inbound_at = Some(pincer_os::now_ms()));
                    }
                    if let Err(e) = self.store(list) {
                        tracing::warn!(channel = "telegram", "{e}");
                        // Full: wait for the drain to make room (the updates stay at Telegram).
                        let _ = tokio::time::timeout(Duration::from_secs(5), self.room.notified())
                            .await;
                    }
                }
                Err(ApiError::Unauthorized) => {
                    self.stop(&ApiError::Unauthorized);
                    return;
                }
                Err(e) => {
                    self.error(&e);
                    backoff.wait(&e).await;
                }
            }
        }
    }

    /// Stores a batch durably, then confirms it, then wakes the drain. A chat with
    /// [`MAX_PER_CHAT`] messages waiting gets no more until it has caught up: those updates are
    /// confirmed and dropped, with a warning.
    fn store(&self, updates: Vec<Value>) -> Result<(), IngressError> {
        let mut last = None;
        let mut result = Ok(());
        for u in updates {
            let Some(id) = u["update_id"].as_i64() else {
                continue;
            };
            let chat = chat_of(&u);
            if self.ingress.count_of(chat) >= MAX_PER_CHAT {
                let why = format!(
                    "chat {chat}: {MAX_PER_CHAT} messages already waiting; update {id} dropped"
                );
                tracing::warn!(channel = "telegram", "{why}");
                self.set_status(|s| {
                    s.last_error = Some(why);
                    s.last_error_at = Some(pincer_os::now_ms());
                });
                last = Some(id);
                continue;
            }
            match self.ingress.push(id, chat, u) {
                Ok(_) => last = Some(id),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Some(id) = last {
            self.ingress.confirm(id)?;
            self.wake.notify_one();
        }
        result
    }

    /// Hands stored records to one worker per chat, at most [`MAX_CHATS`] at once: a chat's
    /// messages are answered one after the other, and a slow answer in one chat does not hold
    /// up the others.
    async fn drain(self: Arc<Self>) {
        let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
        loop {
            // From the ingress's index: no record is read here.
            for chat in self.ingress.groups() {
                let mut b = lock(&busy);
                if b.len() >= MAX_CHATS {
                    break;
                }
                if b.insert(chat) {
                    drop(b);
                    tokio::spawn(self.clone().chat_worker(chat, busy.clone()));
                }
            }
            // Woken by a stored batch or a worker that finished (a permit is kept if no one
            // waits, so nothing is missed between the scan and here).
            let _ = tokio::time::timeout(Duration::from_secs(30), self.wake.notified()).await;
        }
    }

    async fn chat_worker(self: Arc<Self>, chat: i64, busy: Arc<Mutex<HashSet<i64>>>) {
        let mut backoff = Backoff::default();
        while let Some(rec) = self.ingress.next_of(chat) {
            let id = rec.id;
            match inbound::handle(&self, rec).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    // Left in the ingress and tried again (network down, flood control); the
                    // chat's later messages wait behind it, so its order holds.
                    self.error(&e);
                    backoff.wait(&e).await;
                    continue;
                }
                Err(e) => {
                    // Telegram will not take it (blocked by the user, chat gone): dropped.
                    self.error(&e);
                    tracing::warn!(
                        channel = "telegram",
                        update = id,
                        "not answered: {}",
                        self.api.scrub(&e.to_string())
                    );
                }
            }
            backoff = Backoff::default();
            if let Err(e) = self.ingress.done(id) {
                tracing::warn!(channel = "telegram", "{e}");
            }
            self.room.notify_one();
        }
        lock(&busy).remove(&chat);
        self.wake.notify_one();
    }

    /// Called for every `chat` event of the agent: feeds the streams of this account's runs.
    pub fn observe(&self, event: &str, payload: &Value) {
        if event != "chat" {
            return;
        }
        let Some(run) = payload["runId"].as_str() else {
            return;
        };
        let streams = lock(&self.streams);
        let Some((_, tx)) = streams.iter().find(|(id, _)| id == run) else {
            return;
        };
        let text = payload["message"]["content"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<String>()
            })
            .unwrap_or_default();
        if !text.is_empty() {
            let _ = tx.send(text);
        }
    }
}

/// Waits after an error: `retry_after` for 429, else 1 s doubling to 30 s (5 s at least after a
/// 409, which another poller keeps causing).
#[derive(Default)]
pub(crate) struct Backoff {
    next_ms: u64,
}

impl Backoff {
    pub(crate) async fn wait(&mut self, e: &ApiError) {
        let ms = match e {
            ApiError::RetryAfter { retry_after, .. } => retry_after * 1000,
            ApiError::Conflict(_) => self.step().max(5_000),
            _ => self.step(),
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn step(&mut self) -> u64 {
        self.next_ms = (self.next_ms * 2).clamp(1_000, 30_000);
        self.next_ms
    }
}
