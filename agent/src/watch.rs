//! What session watchers are told. `sessions.subscribe` watches the session list
//! (`sessions.changed`), `sessions.messages.subscribe {key}` one session's transcript
//! (`session.message`); the gateway keeps who watches what (the connection's state) and
//! delivers by [`Audience::SessionWatchers`] / [`Audience::MessageWatchers`]. Shapes follow
//! `agent-captures/control-ui-chat.cdp.json`.

use serde_json::{json, Value};

use crate::events::AGENT_ID;
use crate::host::Audience;
use crate::runtime::Agent;
use crate::store::Line;
use crate::transcript::Message;

/// `session.message` for the entry `seq` just appended to `key`, then `sessions.changed`
/// (its row moved: a new preview, a new time).
pub fn appended(agent: &Agent, key: &str, seq: u64, message: &Message) {
    let line = Line {
        seq,
        message: message.clone(),
    };
    let Some(shown) = crate::methods::display(&line, 100_000) else {
        return;
    };
    let session = session_row(agent, key);
    let payload = json!({ "sessionKey": key, "agentId": AGENT_ID, "message": shown,
        "messageId": format!("m{seq}"), "messageSeq": seq, "session": session });
    agent
        .host()
        .emit("session.message", &payload, Audience::MessageWatchers);
    let reason = if matches!(message, Message::User { .. }) {
        "send"
    } else {
        "message"
    };
    changed(agent, key, json!({ "reason": reason }));
}

/// `sessions.changed` for `key` with `fields` (`reason`, or `phase` and `runId`).
pub fn changed(agent: &Agent, key: &str, fields: Value) {
    let mut payload = json!({ "sessionKey": key, "agentId": AGENT_ID, "ts": pincer_os::now_ms(),
        "session": session_row(agent, key) });
    if let (Value::Object(p), Value::Object(f)) = (&mut payload, fields) {
        p.extend(f);
    }
    agent
        .host()
        .emit("sessions.changed", &payload, Audience::SessionWatchers);
}

fn session_row(agent: &Agent, key: &str) -> Value {
    agent
        .store()
        .get(key)
        .map_or(Value::Null, |e| crate::methods::row(agent, &e))
}
