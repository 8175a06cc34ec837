//! Following one chat run as a client sees it, for every suite that drives the agent through a
//! real gateway (pincer-gateway's or OpenClaw's): the run's `chat` events until its terminal
//! state. Included with `#[path = "…/tests/support/chat.rs"] mod chat;`.
#![allow(dead_code)]

use std::time::Duration;

use pincer_client::session::Session;
use serde_json::{json, Value};

/// `chat.send` of `message` to `key` under a fresh idempotency key: the response and the key.
pub async fn send(s: &mut Session, key: &str, message: &str) -> (Value, String) {
    let id = pincer_os::uuid_v4();
    let r = s
        .request(
            "chat.send",
            &json!({ "sessionKey": key, "message": message, "idempotencyKey": id }),
        )
        .await
        .expect("chat.send");
    (r, id)
}

/// The `chat` events of `run_id`, in order, up to and including its `final`, `error` or
/// `aborted` (other events and other runs are skipped). Panics when none comes `within`.
pub async fn until_done(s: &mut Session, run_id: &str, within: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(deadline, s.next_event())
            .await
            .unwrap_or_else(|_| panic!("no terminal chat state within {within:?}; saw {out:?}"))
            .expect("socket open");
        if e.event.as_str() != "chat" {
            continue;
        }
        let p = e.payload.unwrap_or_default();
        if p["runId"] != run_id {
            continue;
        }
        let done = matches!(p["state"].as_str(), Some("final" | "error" | "aborted"));
        out.push(p);
        if done {
            return out;
        }
    }
}

/// The text of a `chat` event's message.
pub fn text_of(p: &Value) -> &str {
    p["message"]["content"][0]["text"].as_str().unwrap_or("")
}
