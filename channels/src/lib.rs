//! # pincer-channels
//!
//! The messaging channels pincer-gateway owns: an inbound message becomes a turn of the agent
//! runtime in the chat's session, and the reply goes back on the channel it came from.
//!
//! **Owns:** each channel's connection to its service (one module and cargo feature per
//! channel: [`telegram`]), the durable ingress of inbound messages ([`ingress`]), DM pairing
//! ([`pairing`]), and what `channels.status` shows.
//! **Must not touch:** the gateway's sockets, registry or trust store, or the agent's
//! internals: a channel starts turns with [`pincer_agent::runtime::Agent::start`], waits for
//! them, reads their transcript, and hears their streamed text through [`Channels::observe`],
//! which the gateway calls for every event the agent emits.
//!
//! State lives under `<state dir>/channels/<channel>/<account>/`.

#![warn(missing_docs)]

pub mod ingress;
pub mod pairing;
#[cfg(feature = "telegram")]
pub mod telegram;

use std::path::Path;
use std::sync::Arc;

use pincer_agent::runtime::Agent;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What setting up a channel can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The ingress directory could not be opened.
    #[error(transparent)]
    Ingress(#[from] ingress::IngressError),
    /// A channel's section is wrong.
    #[cfg(feature = "telegram")]
    #[error(transparent)]
    Telegram(#[from] telegram::config::TelegramConfigError),
    /// No such channel (or not built in).
    #[error("unknown channel {0:?} (this gateway has: {1})")]
    Unknown(String, String),
    /// `to` is not an address on that channel.
    #[error("{0}")]
    BadTarget(String),
    /// The channel's service refused or could not be reached.
    #[error("{0}")]
    Delivery(String),
    /// No channel is configured.
    #[error("no messaging channel is configured")]
    NoChannels,
    /// No pending request with that code.
    #[error("no pending pairing request {0:?} (codes expire after an hour)")]
    NoRequest(String),
    /// The pairing store could not be written.
    #[error(transparent)]
    Pairing(#[from] pairing::PairingError),
}

/// `[channels]` in `gateway.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsSection {
    /// `[channels.telegram]`.
    #[cfg(feature = "telegram")]
    #[serde(default)]
    pub telegram: telegram::config::TelegramSection,
}

/// The running channels.
#[derive(Default)]
pub struct Channels {
    #[cfg(feature = "telegram")]
    telegram: Option<Arc<telegram::Telegram>>,
}

/// The channels this build has.
pub const BUILT_IN: &[&str] = &[
    #[cfg(feature = "telegram")]
    "telegram",
];

impl Channels {
    /// Resolves `section` and sets up each configured channel over `state_dir` (not started:
    /// see [`Channels::spawn`]). `env` reads the gateway's environment (`TELEGRAM_BOT_TOKEN`).
    pub fn new(
        section: &ChannelsSection,
        agent: &Arc<Agent>,
        state_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Channels, ChannelError> {
        #[cfg(not(feature = "telegram"))]
        let _ = (section, agent, state_dir, &env);
        Ok(Channels {
            #[cfg(feature = "telegram")]
            telegram: match section.telegram.resolve(env("TELEGRAM_BOT_TOKEN"))? {
                Some(cfg) => Some(telegram::Telegram::new(
                    cfg,
                    agent.clone(),
                    &state_dir
                        .join("channels")
                        .join("telegram")
                        .join(telegram::ACCOUNT),
                )?),
                None => None,
            },
        })
    }

    /// Starts every configured channel on the current runtime.
    pub fn spawn(&self) {
        #[cfg(feature = "telegram")]
        if let Some(t) = &self.telegram {
            tokio::spawn(t.clone().run());
        }
    }

    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        #[cfg(feature = "telegram")]
        if self.telegram.is_some() {
            return true;
        }
        false
    }

    /// The Telegram account, when configured.
    #[cfg(feature = "telegram")]
    pub fn telegram(&self) -> Option<&Arc<telegram::Telegram>> {
        self.telegram.as_ref()
    }

    /// Feeds an agent event to the channels (their streamed replies).
    pub fn observe(&self, event: &str, payload: &Value) {
        #[cfg(feature = "telegram")]
        if let Some(t) = &self.telegram {
            t.observe(event, payload);
        }
        #[cfg(not(feature = "telegram"))]
        let _ = (event, payload);
    }

    /// Sends `text` to `to` on `channel` (`None`: the only one configured); the receipt
    /// `{channel, to, chatId, messageId}`. Telegram addresses: a chat id, `telegram:<id>`,
    /// `tg:<id>`.
    pub async fn send(
        &self,
        channel: Option<&str>,
        to: &str,
        text: &str,
    ) -> Result<Value, ChannelError> {
        let channel = match channel {
            Some(c) => c.to_owned(),
            None if self.any() => BUILT_IN
                .first()
                .map(|c| (*c).to_owned())
                .unwrap_or_default(),
            None => return Err(ChannelError::NoChannels),
        };
        #[cfg(feature = "telegram")]
        if channel == "telegram" {
            let Some(t) = &self.telegram else {
                return Err(ChannelError::Unknown(channel, "none configured".into()));
            };
            let chat = telegram::config::parse_user_id(to).ok_or_else(|| {
                ChannelError::BadTarget(format!("{to:?} is not a Telegram chat id (telegram:<id>)"))
            })?;
            let id = t
                .send_text(chat, text)
                .await
                .map_err(|e| ChannelError::Delivery(t.api.scrub(&e.to_string())))?;
            return Ok(
                json!({ "channel": "telegram", "to": to, "chatId": chat.to_string(), "messageId": id.to_string() }),
            );
        }
        #[cfg(not(feature = "telegram"))]
        let _ = (to, text);
        Err(ChannelError::Unknown(channel, BUILT_IN.join(", ")))
    }

    /// `channels.status`, as the reference answers it (`channelOrder`, `channelLabels`,
    /// `channelDetailLabels`, `channelSystemImages`, `channelMeta`, `channels`,
    /// `channelAccounts`, `channelDefaultAccountId`, `statusIssues`) plus, per account, what
    /// Pincer adds (`bot`, `pendingUpdates`, `pendingPairings`, `stopped`). With `probe`, each
    /// account asks its service now (`probe`, `lastProbeAt`).
    pub async fn status(&self, probe: bool) -> Value {
        #[allow(unused_mut)]
        let mut out = json!({
            "ts": pincer_os::now_ms(), "channelOrder": [], "channelLabels": {},
            "channelDetailLabels": {}, "channelSystemImages": {}, "channelMeta": [],
            "channels": {}, "channelAccounts": {}, "channelDefaultAccountId": {}, "statusIssues": [],
        });
        #[cfg(feature = "telegram")]
        if let Some(t) = &self.telegram {
            let probed = if probe { Some(t.probe().await) } else { None };
            let s = t.status();
            let now = pincer_os::now_ms();
            let mut account = json!({
                "accountId": telegram::ACCOUNT, "enabled": true,
                "lastStartAt": s.last_start_at, "lastStopAt": s.last_stop_at,
                "restartPending": false, "reconnectAttempts": s.reconnect_attempts,
                "lastConnectedAt": s.last_connected_at, "lastEventAt": s.last_event_at,
                "lastTransportActivityAt": s.last_event_at, "lifecycle": s.lifecycle(),
                "lastInboundAt": s.last_inbound_at, "lastOutboundAt": s.last_outbound_at,
                "tokenSource": t.cfg.token_source,
                "tokenStatus": if s.stopped.is_some() { "invalid" } else { "available" },
                "mode": "polling", "allowUnmentionedGroups": false, "configured": true,
                "running": s.running, "connected": s.connected, "lastError": s.last_error,
                "bot": s.bot, "stopped": s.stopped.is_some(), "pendingUpdates": t.ingress.len(),
                "pendingPairings": t.pairing().pending(now).len(),
                "dmPolicy": format!("{:?}", t.cfg.dm_policy).to_lowercase(),
            });
            if let Some(p) = probed {
                account["probe"] = p;
                account["lastProbeAt"] = json!(now);
            }
            out["channelOrder"] = json!(["telegram"]);
            out["channelLabels"] = json!({ "telegram": "Telegram" });
            out["channelDetailLabels"] = json!({ "telegram": "Telegram Bot" });
            out["channelSystemImages"] = json!({ "telegram": "paperplane" });
            out["channelMeta"] = json!([{ "id": "telegram", "label": "Telegram",
                "detailLabel": "Telegram Bot", "systemImage": "paperplane" }]);
            out["channels"] = json!({ "telegram": {
                "configured": true, "running": s.running, "lastStartAt": s.last_start_at,
                "lastStopAt": s.last_stop_at, "lastError": s.last_error,
                "tokenSource": t.cfg.token_source, "lastProbeAt": account["lastProbeAt"].clone(),
                "mode": "polling" } });
            out["channelAccounts"] = json!({ "telegram": [account] });
            out["channelDefaultAccountId"] = json!({ "telegram": telegram::ACCOUNT });
            if let Some(why) = &s.stopped {
                out["statusIssues"] = json!([{ "channel": "telegram", "accountId": telegram::ACCOUNT,
                    "kind": "auth", "message": why }]);
            }
        }
        #[cfg(not(feature = "telegram"))]
        let _ = probe;
        out
    }

    /// `channels.pairing.list` (the reference's shape): the accounts under pairing and their
    /// pending requests; each request's code is in `metadata.code`.
    pub fn pairing_list(&self, channel: Option<&str>) -> Result<Value, ChannelError> {
        if let Some(c) = channel {
            if !BUILT_IN.contains(&c) {
                return Err(ChannelError::Unknown(c.into(), BUILT_IN.join(", ")));
            }
        }
        #[allow(unused_mut)] // nothing to add without a channel feature
        let mut accounts: Vec<Value> = Vec::new();
        #[allow(unused_mut)]
        let mut requests: Vec<Value> = Vec::new();
        #[cfg(feature = "telegram")]
        if channel.is_none_or(|c| c == "telegram") {
            if let Some(t) = &self.telegram {
                accounts.push(json!({ "channel": "telegram", "channelLabel": "Telegram",
                    "accountId": telegram::ACCOUNT, "notifySupported": true }));
                for r in t.pairing().pending(pincer_os::now_ms()) {
                    requests.push(json!({
                        "requestId": r.id, "channel": "telegram", "channelLabel": "Telegram",
                        "accountId": telegram::ACCOUNT, "senderId": r.sender_id,
                        "senderLabel": r.sender_name, "metadata": { "code": r.code },
                        "createdAt": iso(r.created_at_ms), "lastSeenAt": iso(r.last_seen_at_ms),
                        "expiresAt": iso(r.created_at_ms + pairing::TTL_MS), "notifySupported": true,
                    }));
                }
            }
        }
        Ok(json!({
            "accounts": accounts, "requests": requests, "commandOwnerConfigured": false,
            "limits": { "pendingPerAccount": pairing::MAX_PENDING, "ttlMs": pairing::TTL_MS },
        }))
    }

    fn pairing_of(&self, channel: &str) -> Result<&pairing::Pairing, ChannelError> {
        #[cfg(feature = "telegram")]
        if channel == "telegram" {
            if let Some(t) = &self.telegram {
                return Ok(t.pairing());
            }
        }
        Err(ChannelError::Unknown(channel.into(), BUILT_IN.join(", ")))
    }

    /// `channels.pairing.approve`: approves the request with this id (or code); with `notify`,
    /// tells the sender on the channel. The reference's result.
    pub async fn pairing_approve(
        &self,
        channel: &str,
        request: &str,
        notify: bool,
    ) -> Result<Value, ChannelError> {
        let r = self
            .pairing_of(channel)?
            .approve(request, pincer_os::now_ms())?
            .ok_or_else(|| ChannelError::NoRequest(request.into()))?;
        tracing::info!(channel, sender = %r.sender_id, "pairing approved");
        #[allow(unused_mut)]
        let mut notification = "not-requested";
        #[cfg(feature = "telegram")]
        if notify && channel == "telegram" {
            if let (Some(t), Ok(chat)) = (&self.telegram, r.sender_id.parse::<i64>()) {
                let sent = t
                    .api
                    .call(
                        "sendMessage",
                        &json!({ "chat_id": chat, "text": "You are approved: send me a message." }),
                        telegram::api::CALL_TIMEOUT,
                    )
                    .await;
                notification = if sent.is_ok() { "sent" } else { "failed" };
            }
        }
        #[cfg(not(feature = "telegram"))]
        let _ = notify;
        Ok(
            json!({ "requestId": r.id, "senderId": r.sender_id, "notification": notification,
                   "commandOwnerBootstrap": "not-requested" }),
        )
    }

    /// `channels.pairing.dismiss`: drops the request without approving it.
    pub fn pairing_dismiss(&self, channel: &str, request: &str) -> Result<Value, ChannelError> {
        let r = self
            .pairing_of(channel)?
            .dismiss(request, pincer_os::now_ms())?
            .ok_or_else(|| ChannelError::NoRequest(request.into()))?;
        Ok(json!({ "requestId": r.id, "senderId": r.sender_id }))
    }
}

/// `ms` since the epoch as ISO 8601 UTC with milliseconds (`2026-12-02T14:03:46.700Z`).
pub fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = pincer_os::civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        ms % 1000
    )
}
