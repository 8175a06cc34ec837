//! The events of one run as clients see them: `agent` events numbered per run across all their
//! streams, and `chat` events that borrow the seq of the agent event that caused them, with
//! deltas paced to at most one per [`CHAT_PACING`] (text in between is merged).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::host::{Audience, Host};

/// At most one `chat` delta per this long (the reference's `LIVE_TEXT_PACING_MS`).
pub const CHAT_PACING: Duration = Duration::from_millis(75);

/// The agent id every session here belongs to.
pub const AGENT_ID: &str = "main";

/// The event side of one run.
pub struct RunEvents {
    host: Arc<dyn Host>,
    /// The run id (the client's idempotencyKey).
    pub run_id: String,
    /// The session key.
    pub session_key: String,
    /// The session id.
    pub session_id: String,
    origin: Option<u64>,
    seq: u64,
    /// The current model call's text: what the chat shows.
    chat_text: String,
    /// How much of it clients have.
    chat_sent: usize,
    /// The next delta rewrites the text (a new model call after one that had text).
    replace: bool,
    last_chat: Option<Instant>,
    /// The seq of the agent event behind the newest text.
    text_seq: u64,
    /// The seq the last chat delta went out with.
    chat_seq: u64,
}

impl RunEvents {
    /// Events for `run_id` in `session_key`, started by connection `origin`.
    pub fn new(
        host: Arc<dyn Host>,
        run_id: String,
        session_key: String,
        session_id: String,
        origin: Option<u64>,
    ) -> Self {
        RunEvents {
            host,
            run_id,
            session_key,
            session_id,
            origin,
            seq: 0,
            chat_text: String::new(),
            chat_sent: 0,
            replace: false,
            last_chat: None,
            text_seq: 0,
            chat_seq: 0,
        }
    }

    /// An `agent` event on `stream`; returns its seq.
    pub fn agent(&mut self, stream: &str, data: Value) -> u64 {
        self.seq += 1;
        let mut p = json!({
            "runId": self.run_id, "stream": stream, "data": data,
            "sessionKey": self.session_key, "agentId": AGENT_ID,
            "seq": self.seq, "ts": pincer_os::now_ms(), "isHeartbeat": false,
        });
        if stream == "lifecycle" {
            p["sessionId"] = json!(self.session_id);
        }
        let to = if stream == "tool" {
            Audience::ToolRecipients {
                origin: self.origin,
            }
        } else {
            Audience::Readers
        };
        self.host.emit("agent", &p, to);
        self.seq
    }

    fn chat(&self, seq: u64, state: &str, extra: Value) {
        let mut p = json!({
            "runId": self.run_id, "sessionKey": self.session_key, "agentId": AGENT_ID,
            "seq": seq, "state": state,
        });
        if let (Value::Object(p), Value::Object(extra)) = (&mut p, extra) {
            p.extend(extra);
        }
        self.host.emit("chat", &p, Audience::Readers);
    }

    fn message(&self, text: &str) -> Value {
        json!({
            "role": "assistant",
            "content": [{ "type": "text", "text": text }],
            "timestamp": pincer_os::now_ms(),
        })
    }

    /// A run phase: `chat {state:"status"}` and `agent run_status`.
    pub fn status(&mut self, phase: &str) {
        let seq = self.seq + 1;
        self.chat(seq, "status", json!({ "phase": phase }));
        self.agent("run_status", json!({ "phase": phase }));
    }

    /// A new model call starts: its text replaces the previous call's on the chat.
    pub fn next_model_call(&mut self) {
        if !self.chat_text.is_empty() {
            self.flush();
            self.replace = true;
            self.chat_text.clear();
            self.chat_sent = 0;
        }
    }

    /// More assistant text: an `assistant` event now, a `chat` delta now or at
    /// [`RunEvents::flush_at`].
    pub fn text(&mut self, delta: &str, item_id: &str) {
        if delta.is_empty() {
            return;
        }
        self.chat_text.push_str(delta);
        self.text_seq = self.agent(
            "assistant",
            json!({ "text": self.chat_text, "delta": delta, "itemId": item_id }),
        );
        if self.last_chat.is_none_or(|t| t.elapsed() >= CHAT_PACING) {
            self.flush();
        }
    }

    /// When buffered chat text is due, if any is.
    pub fn flush_at(&self) -> Option<Instant> {
        if self.chat_sent < self.chat_text.len() || (self.replace && !self.chat_text.is_empty()) {
            Some(
                self.last_chat
                    .map_or_else(Instant::now, |t| t + CHAT_PACING),
            )
        } else {
            None
        }
    }

    /// Sends buffered chat text as one delta.
    pub fn flush(&mut self) {
        if self.chat_sent >= self.chat_text.len() {
            return;
        }
        let delta = &self.chat_text[self.chat_sent..];
        let mut extra = json!({ "deltaText": delta, "message": self.message(&self.chat_text) });
        if self.replace {
            extra["replace"] = json!(true);
            extra["deltaText"] = json!(self.chat_text);
            self.replace = false;
        }
        self.chat(self.text_seq, "delta", extra);
        self.chat_seq = self.text_seq;
        self.chat_sent = self.chat_text.len();
        self.last_chat = Some(Instant::now());
    }

    /// The text the chat shows now.
    pub fn chat_text(&self) -> &str {
        &self.chat_text
    }

    /// `chat final` (with the last delta's seq), after flushing.
    pub fn chat_final(&mut self, stop_reason: &str) {
        self.flush();
        let mut extra = json!({ "stopReason": stop_reason });
        if !self.chat_text.is_empty() {
            extra["message"] = self.message(&self.chat_text);
        }
        self.chat(self.chat_seq.max(self.text_seq).max(1), "final", extra);
    }

    /// `chat aborted` with the partial text.
    pub fn chat_aborted(&mut self, stop_reason: &str) {
        self.flush();
        let mut extra = json!({ "stopReason": stop_reason });
        if !self.chat_text.is_empty() {
            extra["message"] = self.message(&self.chat_text);
        }
        self.chat(self.seq.max(1), "aborted", extra);
    }

    /// `chat error` saying what happened.
    pub fn chat_error(&mut self, message: &str, kind: &str, detail: Option<Value>) {
        self.flush();
        let mut extra =
            json!({ "errorMessage": message, "errorKind": kind, "stopReason": "error" });
        if let Some(d) = detail {
            extra["errorDetail"] = d;
        }
        if !self.chat_text.is_empty() {
            extra["message"] = self.message(&self.chat_text);
        }
        self.chat(self.seq.max(1), "error", extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{BoxFuture, InvokeError};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Value, Audience)>>);

    impl Host for Recorder {
        fn emit(&self, event: &str, payload: &Value, to: Audience) {
            self.0
                .lock()
                .unwrap()
                .push((event.into(), payload.clone(), to));
        }
        fn nodes(&self) -> Vec<Value> {
            vec![]
        }
        fn invoke(
            &self,
            _: &str,
            _: &str,
            _: Option<String>,
            _: u64,
            _: String,
        ) -> BoxFuture<Result<Value, InvokeError>> {
            Box::pin(async {
                Err(InvokeError {
                    code: "X".into(),
                    message: "none".into(),
                })
            })
        }
    }

    fn chats(r: &Recorder) -> Vec<Value> {
        r.0.lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == "chat")
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    #[test]
    fn deltas_are_paced_merged_and_the_final_reuses_their_seq() {
        let rec = Arc::new(Recorder::default());
        let mut ev = RunEvents::new(rec.clone(), "r".into(), "k".into(), "s".into(), Some(7));
        for i in 0..50 {
            ev.text(&format!("w{i} "), "r:1");
        }
        // The first went out at once; the other 49 wait for the pacing window.
        let c = chats(&rec);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(ev.flush_at().is_some());
        ev.chat_final("stop");
        let c = chats(&rec);
        assert_eq!(c.len(), 3, "first delta, merged rest, final");
        let text: String = (0..50).map(|i| format!("w{i} ")).collect();
        let joined: String = c[..2]
            .iter()
            .map(|p| p["deltaText"].as_str().unwrap())
            .collect();
        assert_eq!(joined, text);
        assert_eq!(c[1]["message"]["content"][0]["text"], text.as_str());
        assert_eq!(c[2]["state"], "final");
        assert_eq!(c[2]["seq"], c[1]["seq"]);
        // Every `assistant` event went out, numbered per run.
        let agent: Vec<u64> = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == "agent")
            .map(|(_, p, _)| p["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(agent, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn the_tool_stream_goes_to_the_runs_own_connection_and_a_new_call_replaces() {
        let rec = Arc::new(Recorder::default());
        let mut ev = RunEvents::new(rec.clone(), "r".into(), "k".into(), "s".into(), Some(7));
        ev.text("Let me check.", "r:1");
        ev.agent("tool", json!({ "phase": "start" }));
        ev.next_model_call();
        ev.text("Berlin.", "r:2");
        ev.chat_final("stop");
        let all = rec.0.lock().unwrap().clone();
        let tool = all.iter().find(|(_, p, _)| p["stream"] == "tool").unwrap();
        assert_eq!(tool.2, Audience::ToolRecipients { origin: Some(7) });
        let c = chats(&rec);
        let replaced = c
            .iter()
            .find(|p| p["replace"] == true)
            .expect("a replacing delta");
        assert_eq!(replaced["deltaText"], "Berlin.");
        assert_eq!(
            c.last().unwrap()["message"]["content"][0]["text"],
            "Berlin."
        );
    }
}
