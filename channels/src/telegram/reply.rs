//! Sending a turn's reply: `typing` while the model works; with `streaming.mode = "partial"`,
//! one draft message (plain text) edited as the text grows, never more often than
//! `edit_interval_ms`; at the end the final text as Telegram HTML, split at `text_chunk_limit`
//! (the first piece replaces the draft), then the photos the run's tools returned
//! (`sendPhoto`). Each piece and photo delivered is recorded in the ingress record, so a replay after a
//! crash sends only what is missing.

use std::time::{Duration, Instant};

use pincer_agent::transcript::Message;
use serde_json::{json, Value};

use super::api::{ApiError, Upload, CALL_TIMEOUT};
use super::config::StreamMode;
use super::format;
use super::inbound::Target;
use super::Telegram;
use crate::ingress::Progress;

/// Longest a turn may run before the chat is told it timed out.
const TURN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// `typing` lasts 5 s at Telegram; renewed this often.
const TYPING_EVERY: Duration = Duration::from_millis(4500);
/// Tries for one send before the record is left for later.
const SEND_TRIES: u32 = 4;

fn base(target: &Target) -> Value {
    let mut p = json!({ "chat_id": target.chat_id });
    if let Some(t) = target.thread {
        p["message_thread_id"] = json!(t);
    }
    p
}

/// Calls `method`, waiting out 429s and short network trouble (bounded).
async fn call(tg: &Telegram, method: &str, params: &Value) -> Result<Value, ApiError> {
    let mut backoff = super::Backoff::default();
    let mut tries = 0;
    loop {
        tries += 1;
        match tg.api.call(method, params, CALL_TIMEOUT).await {
            Ok(v) => {
                tg.ok();
                tg.set_status(|s| s.last_outbound_at = Some(pincer_os::now_ms()));
                return Ok(v);
            }
            Err(e) if e.is_transient() && tries < SEND_TRIES => {
                tg.error(&e);
                backoff.wait(&e).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends (`draft: None`) or replaces (`Some(id)`) one piece of Markdown as HTML, falling back to
/// plain text if Telegram still refuses the markup.
async fn piece(
    tg: &Telegram,
    target: &Target,
    md: &str,
    draft: Option<i64>,
    reply: bool,
) -> Result<i64, ApiError> {
    let mut p = base(target);
    let method = match draft {
        Some(id) => {
            p["message_id"] = json!(id);
            "editMessageText"
        }
        None => {
            if reply {
                p["reply_parameters"] =
                    json!({ "message_id": target.reply_to, "allow_sending_without_reply": true });
            }
            "sendMessage"
        }
    };
    p["text"] = json!(format::html(md));
    p["parse_mode"] = json!("HTML");
    p["link_preview_options"] = json!({ "is_disabled": true });
    let sent = match call(tg, method, &p).await {
        Err(ApiError::Refused {
            code: 400,
            description,
            ..
        }) if description.contains("not modified") => {
            return Ok(draft.unwrap_or(0));
        }
        Err(ApiError::Refused {
            code: 400,
            description,
            ..
        }) if description.contains("parse") => {
            tracing::warn!(
                channel = "telegram",
                "HTML refused ({description}); sending plain text"
            );
            if let Some(o) = p.as_object_mut() {
                o.remove("parse_mode");
            }
            p["text"] = json!(md);
            call(tg, method, &p).await?
        }
        r => r?,
    };
    Ok(sent["message_id"].as_i64().or(draft).unwrap_or(0))
}

/// A short text (a command's answer, a pairing code), split if long.
pub(crate) async fn text(tg: &Telegram, target: &Target, md: &str) -> Result<(), ApiError> {
    send(tg, target, md).await.map(drop)
}

/// [`text`], answering `target.reply_to` when there is one; the last message's id.
pub(crate) async fn send(tg: &Telegram, target: &Target, md: &str) -> Result<i64, ApiError> {
    let mut last = 0;
    for (i, c) in format::chunks(md, tg.cfg.text_chunk_limit)
        .iter()
        .enumerate()
    {
        last = piece(tg, target, c, None, i == 0 && target.reply_to > 0).await?;
    }
    Ok(last)
}

fn save(tg: &Telegram, update: i64, run_id: &str, draft: Option<i64>, delivered: usize) {
    if let Err(e) = tg.ingress.progress(
        update,
        Progress::Started {
            run_id: run_id.to_owned(),
            draft,
            delivered,
        },
    ) {
        tracing::warn!(channel = "telegram", "{e}");
    }
}

/// Streams and delivers the reply of `run_id`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn turn(
    tg: &Telegram,
    target: &Target,
    update: i64,
    run_id: &str,
    session_key: &str,
    mut stream: tokio::sync::watch::Receiver<String>,
    mut draft: Option<i64>,
    delivered: usize,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let interval = Duration::from_millis(tg.cfg.edit_interval_ms);
    let streaming = tg.cfg.stream == StreamMode::Partial && delivered == 0;
    let mut last_edit: Option<Instant> = None;
    let mut shown = String::new();
    let mut typing_at: Option<Instant> = None;
    let mut dirty = false;
    let mut open = true;
    let outcome = loop {
        if draft.is_none() && typing_at.is_none_or(|t| t.elapsed() >= TYPING_EVERY) {
            let mut p = base(target);
            p["action"] = json!("typing");
            let _ = tg.api.call("sendChatAction", &p, CALL_TIMEOUT).await;
            typing_at = Some(Instant::now());
        }
        let due = last_edit.map_or_else(Instant::now, |t| t + interval);
        tokio::select! {
            o = tg.agent.wait(run_id, TYPING_EVERY) => {
                if let Some(o) = o { break Some(o); }
                if started.elapsed() > TURN_TIMEOUT { break None; }
            }
            r = stream.changed(), if streaming && open && !dirty => {
                open = r.is_ok();
                dirty = open;
            }
            _ = tokio::time::sleep_until(due.into()), if dirty => {
                dirty = false;
                let now_text = stream.borrow_and_update().clone();
                if now_text.trim().is_empty() || now_text == shown {
                    continue;
                }
                // The draft is plain text: half-written Markdown is not always valid markup.
                let preview: String = now_text.chars().take(tg.cfg.text_chunk_limit).collect();
                let mut p = base(target);
                p["text"] = json!(preview);
                let r = match draft {
                    Some(id) => {
                        p["message_id"] = json!(id);
                        call(tg, "editMessageText", &p).await
                    }
                    None => {
                        p["reply_parameters"] = json!({ "message_id": target.reply_to, "allow_sending_without_reply": true });
                        call(tg, "sendMessage", &p).await
                    }
                };
                match r {
                    Ok(v) if draft.is_none() => {
                        draft = v["message_id"].as_i64();
                        save(tg, update, run_id, draft, 0);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(channel = "telegram", "draft not updated: {}", tg.api.scrub(&e.to_string())),
                }
                shown = now_text;
                last_edit = Some(Instant::now());
            }
        }
    };
    let final_text = match &outcome {
        Some(o) if o.status == "error" => format!(
            "⚠️ {}",
            o.error.clone().unwrap_or_else(|| "the run failed".into())
        ),
        Some(o) if o.status == "aborted" && o.text.trim().is_empty() => "(stopped)".into(),
        Some(o) if o.text.trim().is_empty() => String::new(),
        Some(o) => o.text.clone(),
        None => "⚠️ The answer took too long; the run goes on in the session.".into(),
    };
    deliver(
        tg,
        target,
        update,
        run_id,
        session_key,
        &final_text,
        draft,
        delivered,
    )
    .await
}

/// The final text of `run_id` (split, the first piece replacing the draft), then its photos,
/// skipping the `delivered` items a crash interrupted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver(
    tg: &Telegram,
    target: &Target,
    update: i64,
    run_id: &str,
    session_key: &str,
    final_text: &str,
    draft: Option<i64>,
    delivered: usize,
) -> Result<(), ApiError> {
    let pieces = format::chunks(final_text, tg.cfg.text_chunk_limit);
    for (i, p) in pieces.iter().enumerate().skip(delivered) {
        let replace = if i == 0 { draft } else { None };
        piece(tg, target, p, replace, i == 0).await?;
        save(tg, update, run_id, draft, i + 1);
    }
    // A draft that had text while the final is empty: say so instead of leaving it half.
    if pieces.is_empty() {
        if let Some(id) = draft {
            let _ = piece(tg, target, "(no text)", Some(id), false).await;
        }
    }
    // `delivered` counts the text pieces, then the photos: a replay skips what went out.
    let sent = Sent {
        update,
        run_id,
        draft,
        before: pieces.len(),
    };
    photos(
        tg,
        target,
        session_key,
        &sent,
        delivered.saturating_sub(pieces.len()),
    )
    .await
}

/// Where [`photos`] records its progress.
struct Sent<'a> {
    update: i64,
    run_id: &'a str,
    draft: Option<i64>,
    /// Text pieces before the photos.
    before: usize,
}

/// The images the run's tools returned, as photos (documents past the photo limits).
async fn photos(
    tg: &Telegram,
    target: &Target,
    session_key: &str,
    sent: &Sent<'_>,
    skip: usize,
) -> Result<(), ApiError> {
    let run_id = sent.run_id;
    // A run that used no tool returned no image: the transcript is not read for it.
    if let Some(o) = tg.agent.wait(run_id, Duration::ZERO).await {
        if o.tools.is_empty() {
            return Ok(());
        }
    }
    let mut n = 0usize;
    let store = tg.agent.store().clone();
    let key = session_key.to_owned();
    let lines = tokio::task::spawn_blocking(move || store.transcript(&key).unwrap_or_default())
        .await
        .unwrap_or_default();
    let start = lines
        .iter()
        .rposition(|l| matches!(&l.message, Message::User { run_id: Some(r), .. } if r == run_id));
    let Some(start) = start else {
        return Ok(());
    };
    for l in lines.iter().skip(start + 1) {
        if matches!(l.message, Message::User { .. }) {
            break;
        }
        let Message::ToolResult {
            images, tool_name, ..
        } = &l.message
        else {
            continue;
        };
        for img in images {
            n += 1;
            if n <= skip {
                continue;
            }
            let Ok(bytes) = pincer_protocol::base64url::decode(&img.data) else {
                continue;
            };
            if bytes.len() as u64 > tg.cfg.media_max_bytes {
                tracing::warn!(
                    channel = "telegram",
                    bytes = bytes.len(),
                    "photo over media_max_mb: not sent"
                );
                continue;
            }
            let ext = if img.mime_type.contains("png") {
                "png"
            } else {
                "jpg"
            };
            let name = format!("{tool_name}.{ext}");
            let mut fields = vec![("chat_id", target.chat_id.to_string())];
            if let Some(t) = target.thread {
                fields.push(("message_thread_id", t.to_string()));
            }
            let up = Upload {
                field: "photo",
                filename: &name,
                mime: &img.mime_type,
                bytes: &bytes,
            };
            let mut tries = 0;
            let mut backoff = super::Backoff::default();
            loop {
                tries += 1;
                match tg
                    .api
                    .upload("sendPhoto", &fields, &up, Duration::from_secs(120))
                    .await
                {
                    Ok(_) => {
                        tg.set_status(|s| s.last_outbound_at = Some(pincer_os::now_ms()));
                        save(tg, sent.update, run_id, sent.draft, sent.before + n);
                        break;
                    }
                    Err(e) if e.is_transient() && tries < SEND_TRIES => {
                        tg.error(&e);
                        backoff.wait(&e).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}
