//! One stored update, from the drain: who sent what where, whether the bot answers it (DM
//! policy and pairing, group policy and mentions), the `/new` and `/status` commands, else a
//! turn of the agent in the chat's session, answered by [`super::reply`].

use pincer_agent::runtime::{StartError, StartRun, Started};
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, CALL_TIMEOUT};
use super::config::{DmPolicy, DmScope, GroupPolicy};
use super::Telegram;
use crate::ingress::{Progress, Record};
use crate::pairing::Asked;

#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub message_id: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub reply_to_message: Option<Box<Message>>,
}

#[derive(Debug, Deserialize)]
struct Update {
    #[serde(default)]
    message: Option<Message>,
}

/// Where a turn's reply goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub chat_id: i64,
    /// Forum topic (`message_thread_id`), except the General topic (1).
    pub thread: Option<i64>,
    /// The message answered.
    pub reply_to: i64,
}

fn name_of(u: &User) -> String {
    match &u.username {
        Some(n) => format!("{} (@{n})", u.first_name),
        None => u.first_name.clone(),
    }
}

/// Handles one record; `Err` leaves it stored for a later try.
pub(crate) async fn handle(tg: &Telegram, rec: Record) -> Result<(), ApiError> {
    let Ok(update) = serde_json::from_value::<Update>(rec.payload.clone()) else {
        tracing::debug!(update = rec.id, "not a message update: skipped");
        return Ok(());
    };
    let Some(msg) = update.message else {
        return Ok(());
    };
    let Some(from) = msg.from.as_ref().filter(|u| !u.is_bot) else {
        return Ok(());
    };
    let Some(text) = msg
        .text
        .clone()
        .or(msg.caption.clone())
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(());
    };
    let (bot_id, bot_name) = tg.me();
    let private = msg.chat.kind == "private";
    let target = Target {
        chat_id: msg.chat.id,
        thread: msg.message_thread_id.filter(|&t| t != 1),
        reply_to: msg.message_id,
    };
    let sender = from.id.to_string();
    let cfg = &tg.cfg;
    let text = if private {
        let allowed =
            cfg.allow_any || cfg.allow_from.contains(&from.id) || tg.pairing.is_approved(&sender);
        match cfg.dm_policy {
            DmPolicy::Disabled => return Ok(()),
            DmPolicy::Open if cfg.allow_any => {}
            _ if allowed => {}
            DmPolicy::Pairing => return pair(tg, &target, from).await,
            _ => {
                tracing::info!(
                    channel = "telegram",
                    sender = from.id,
                    "DM from a sender not in allow_from: ignored"
                );
                return Ok(());
            }
        }
        text
    } else {
        let listed = cfg.groups.get(&msg.chat.id).copied();
        let group_ok = match cfg.group_policy {
            GroupPolicy::Disabled => false,
            GroupPolicy::Open => true,
            GroupPolicy::Allowlist => listed.is_some(),
        };
        let sender_ok = cfg.group_allow_from.is_empty() || cfg.group_allow_from.contains(&from.id);
        if !group_ok || !sender_ok {
            return Ok(());
        }
        let mention = format!("@{bot_name}");
        let mentioned = (!bot_name.is_empty()
            && text.to_lowercase().contains(&mention.to_lowercase()))
            || msg
                .reply_to_message
                .as_ref()
                .and_then(|m| m.from.as_ref())
                .is_some_and(|u| u.id == bot_id);
        if listed.unwrap_or(true) && !mentioned {
            return Ok(());
        }
        let clean = text.replace(&mention, "").trim().to_owned();
        format!("{}: {clean}", from.first_name)
    };
    let session_key = if private {
        match cfg.dm_scope {
            DmScope::Main => "agent:main:main".to_owned(),
            DmScope::PerPeer => format!("agent:main:direct:{}", from.id),
            DmScope::PerChannelPeer => format!("agent:main:telegram:direct:{}", from.id),
        }
    } else {
        match target.thread {
            Some(t) => format!("agent:main:telegram:group:{}:topic:{t}", msg.chat.id),
            None => format!("agent:main:telegram:group:{}", msg.chat.id),
        }
    };
    // Commands (`/new@bot` in groups).
    let command = text
        .split_whitespace()
        .next()
        .map(|c| c.split('@').next().unwrap_or(c).to_lowercase());
    match command.as_deref() {
        Some("/start") if private => {
            return super::reply::text(
                tg,
                &target,
                "Hello! Send me a message and I will answer from the board.",
            )
            .await;
        }
        Some("/new") | Some("/reset") => {
            let store = tg.agent.store().clone();
            let key = session_key.clone();
            let _ =
                tokio::task::spawn_blocking(move || store.reset(&key, pincer_os::now_ms())).await;
            return super::reply::text(tg, &target, "New session started.").await;
        }
        Some("/status") => {
            let s = tg.agent.store().get(&session_key);
            let model = tg
                .agent
                .config()
                .model
                .clone()
                .unwrap_or_else(|| "none configured".into());
            let line = match s {
                Some(e) => format!(
                    "Session {session_key}: {} messages, model {model}.",
                    e.messages
                ),
                None => format!("Session {session_key}: new, model {model}."),
            };
            return super::reply::text(tg, &target, &line).await;
        }
        _ => {}
    }
    // The turn. Its run id comes from the update, so a replay after a crash is the same run.
    let run_id = match &rec.progress {
        Progress::Started { run_id, .. } => run_id.clone(),
        Progress::Received => format!("telegram-{bot_id}-{}", rec.id),
    };
    let (draft, delivered) = match rec.progress {
        Progress::Started {
            draft, delivered, ..
        } => (draft, delivered),
        Progress::Received => (None, 0),
    };
    if let Err(e) = tg.ingress.progress(
        rec.id,
        Progress::Started {
            run_id: run_id.clone(),
            draft,
            delivered,
        },
    ) {
        tracing::warn!(channel = "telegram", "{e}");
    }
    // A replay whose run had finished before the crash: its answer is in the transcript, sent
    // as it was (the model is not asked again).
    if matches!(rec.progress, Progress::Started { .. }) {
        if let Some(answer) = finished_answer(tg, &session_key, &run_id).await {
            return super::reply::deliver(
                tg,
                &target,
                rec.id,
                &run_id,
                &session_key,
                &answer,
                draft,
                delivered,
            )
            .await;
        }
    }
    let (tx, rx) = tokio::sync::watch::channel(String::new());
    super::lock(&tg.streams).push((run_id.clone(), tx));
    let started = tg
        .agent
        .start(StartRun {
            session_key: session_key.clone(),
            message: text,
            images: vec![],
            run_id: run_id.clone(),
            origin: None,
            created_via: "channel".into(),
            model: None,
        })
        .await;
    let result = match started {
        Ok(Started::Started { .. } | Started::InFlight | Started::Finished(_)) => {
            super::reply::turn(
                tg,
                &target,
                rec.id,
                &run_id,
                &session_key,
                rx,
                draft,
                delivered,
            )
            .await
        }
        Err(StartError::Busy(n)) => {
            super::reply::text(
                tg,
                &target,
                &format!("Busy: {n} messages are waiting in this chat. Try again in a moment."),
            )
            .await
        }
        Err(e) => super::reply::text(tg, &target, &format!("⚠️ {e}")).await,
    };
    super::lock(&tg.streams).retain(|(id, _)| *id != run_id);
    result
}

/// A stranger in a private chat under `pairing`: a code (the same one while it is pending).
async fn pair(tg: &Telegram, target: &Target, from: &User) -> Result<(), ApiError> {
    let sender = from.id.to_string();
    match tg.pairing.ask(&sender, &name_of(from), pincer_os::now_ms()) {
        Ok(Asked::New(code) | Asked::Pending(code)) => {
            tracing::info!(channel = "telegram", sender = from.id, "pairing code issued");
            let text = format!(
                "This bot answers its owner only. Your pairing code is {code} (valid for one hour).\n\
                 The owner approves it on the gateway with:\npincer-gateway pairing approve telegram {code}"
            );
            super::reply::text(tg, target, &text).await
        }
        Ok(Asked::Full) => {
            tg.api
                .call(
                    "sendMessage",
                    &json!({ "chat_id": target.chat_id, "text": "Too many pairing requests are pending; try again later." }),
                    CALL_TIMEOUT,
                )
                .await
                .map(|_| ())
        }
        Err(e) => {
            tracing::warn!(channel = "telegram", "{e}");
            Ok(())
        }
    }
}

/// The final answer of `run_id` in `session_key`'s transcript, if the run got that far.
async fn finished_answer(tg: &Telegram, session_key: &str, run_id: &str) -> Option<String> {
    use pincer_agent::transcript::{Message as Entry, StopReason};
    let store = tg.agent.store().clone();
    let key = session_key.to_owned();
    let lines = tokio::task::spawn_blocking(move || store.transcript(&key).unwrap_or_default())
        .await
        .ok()?;
    lines.iter().rev().find_map(|l| match &l.message {
        Entry::Assistant {
            text,
            stop_reason,
            run_id: Some(r),
            ..
        } if r == run_id && *stop_reason != StopReason::ToolUse => Some(match stop_reason {
            StopReason::Error => format!("⚠️ {text}"),
            _ => text.clone(),
        }),
        _ => None,
    })
}
