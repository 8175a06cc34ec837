//! The Control UI's gateway-side methods: session subscriptions (state of the connection:
//! [`Watching`](crate::conn::Watching)), and the features Pincer has none of — exec and plugin
//! approvals, questions, talk, updates — answered empty in the reference's shapes, which is
//! the truth (an error would show the user a toast each time). The agent-side ones are
//! `pincer_agent::control_ui`.

use std::sync::Arc;

use pincer_protocol::error::ErrorShape;
use serde_json::{json, Value};

use crate::conn::ConnHandle;
use crate::reply::Reply;

/// The methods of this module.
pub const METHODS: &[&str] = &[
    "sessions.subscribe",
    "sessions.unsubscribe",
    "sessions.messages.subscribe",
    "sessions.messages.unsubscribe",
    "sessions.observer.visibility",
    "update.status",
    "exec.approval.list",
    "plugin.approval.list",
    "openclaw.approval.list",
    "question.list",
    "talk.catalog",
];

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The answer to one of [`METHODS`] for `conn`.
pub fn answer(conn: &Arc<ConnHandle>, method: &str, raw: Option<&str>) -> Reply {
    let p: Value = raw
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_else(|| json!({}));
    let key = || {
        p["key"]
            .as_str()
            .or(p["sessionKey"].as_str())
            .map(pincer_agent::methods::session_key)
            .ok_or_else(|| {
                ErrorShape::invalid(format!(
                    "invalid {method} params: must have required property 'key'"
                ))
            })
    };
    let v = match method {
        "sessions.subscribe" => {
            lock(&conn.watching).sessions = true;
            json!({ "subscribed": true })
        }
        "sessions.unsubscribe" => {
            lock(&conn.watching).sessions = false;
            json!({ "subscribed": false })
        }
        "sessions.messages.subscribe" => {
            let key = key()?;
            lock(&conn.watching).watch(&key);
            json!({ "subscribed": true, "key": key, "approvalReplay": { "sessionKey": key,
                "updatedAtMs": crate::now_ms(), "approvals": [], "truncated": false } })
        }
        "sessions.messages.unsubscribe" => {
            let key = key()?;
            lock(&conn.watching).messages.retain(|k| *k != key);
            json!({ "subscribed": false, "key": key })
        }
        "sessions.observer.visibility" => json!({ "ok": true }),
        "update.status" => {
            json!({ "sentinel": null, "updateAvailable": null, "effectiveChannel": "stable",
            "schedule": { "channel": "stable", "autoEnabled": false } })
        }
        "exec.approval.list" | "plugin.approval.list" | "openclaw.approval.list" => json!([]),
        "question.list" => json!({ "questions": [] }),
        "talk.catalog" => {
            json!({ "modes": [], "transports": [], "brains": [], "speech": { "providers": [] },
            "transcription": { "ready": false, "providers": [] }, "realtime": { "ready": false, "providers": [] } })
        }
        other => return Err(ErrorShape::invalid(format!("unknown method: {other}"))),
    };
    Ok(v.to_string())
}
