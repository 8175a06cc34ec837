//! The agent's gateway methods, wire-compatible with the reference: params as it names them,
//! results as it shapes them, errors as it words them. Each handler takes the raw params and
//! returns the result JSON or an [`ErrorShape`]; the gateway has already checked scopes.
//!
//! `agent` answers twice on one request id (`accepted`, then the final): [`agent_accept`]
//! and [`agent_final`].

use std::sync::Arc;
use std::time::Duration;

use pincer_protocol::agent::{
    AgentParams, AgentWaitParams, ChatAbortParams, ChatHistoryParams, ChatInjectParams,
    ChatSendParams, SessionKeyParams, SessionsListParams, SessionsPreviewParams,
};
use pincer_protocol::error::ErrorShape;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use crate::events::AGENT_ID;
use crate::host::Audience;
use crate::run::Outcome;
use crate::runtime::{Agent, StartError, StartRun, Started};
use crate::store::{Line, SessionEntry, StoreError};
use crate::transcript::{Image, Message, StopReason, Usage};

/// Methods handled here (advertised in `hello-ok.features.methods`).
pub const METHODS: &[&str] = &[
    "chat.send",
    "chat.history",
    "chat.startup",
    "chat.abort",
    "chat.inject",
    "agent",
    "agent.wait",
    "agent.identity.get",
    "sessions.list",
    "sessions.preview",
    "sessions.resolve",
    "sessions.patch",
    "sessions.reset",
    "sessions.delete",
    "models.list",
    "wake",
    "send",
    "cron.status",
    "cron.list",
    "cron.get",
    "cron.add",
    "cron.update",
    "cron.remove",
    "cron.run",
    "cron.runs",
];

/// Events this module causes.
pub const EVENTS: &[&str] = &[
    "agent",
    "chat",
    "cron",
    "session.message",
    "sessions.changed",
];

/// Default and largest `chat.history` page.
pub const HISTORY_DEFAULT: usize = 200;
const HISTORY_MAX: usize = 1000;

/// Params decoded as the gateway's decoder checked them (`protocol::decode::agent_params`).
pub(crate) fn params<T: DeserializeOwned>(
    method: &str,
    raw: Option<&str>,
) -> Result<T, ErrorShape> {
    pincer_protocol::decode::agent_params(raw)
        .map_err(|m| ErrorShape::invalid(format!("invalid {method} params: {m}")))
}

fn store_err(e: StoreError) -> ErrorShape {
    match e {
        StoreError::NotFound => ErrorShape::invalid("session not found"),
        e => ErrorShape::unavailable(e.to_string()),
    }
}

/// `main` → `agent:main:main`; `foo` → `agent:main:foo`; keys are lower-cased.
pub fn session_key(key: &str) -> String {
    let k = key.trim().to_lowercase();
    if k == "main" || k.is_empty() {
        "agent:main:main".into()
    } else if k.starts_with("agent:") || k == "global" {
        k
    } else {
        format!("agent:main:{k}")
    }
}

fn images_of(attachments: &[Value]) -> Vec<Image> {
    attachments
        .iter()
        .filter_map(|a| {
            let mime = a["mimeType"].as_str()?;
            let data = a["content"].as_str()?;
            mime.starts_with("image/").then(|| Image {
                mime_type: mime.to_owned(),
                data: data
                    .split_once("base64,")
                    .map_or(data, |(_, d)| d)
                    .to_owned(),
            })
        })
        .collect()
}

fn start_err(e: StartError) -> ErrorShape {
    match e {
        StartError::Busy(n) => {
            ErrorShape::unavailable(format!("session busy: {n} runs waiting")).retry_after(1000)
        }
        StartError::Conflict => ErrorShape::invalid(
            "This message ID was already used for different input; use a new idempotencyKey",
        )
        .with_details(json!({ "reason": "chat-request-conflict" })),
        StartError::Store(e) => store_err(e),
    }
}

/// `chat.send`.
pub async fn chat_send(
    agent: &Arc<Agent>,
    origin: u64,
    raw: Option<&str>,
) -> Result<Value, ErrorShape> {
    let p: ChatSendParams = params("chat.send", raw)?;
    if p.idempotency_key.is_empty() {
        return Err(ErrorShape::invalid(
            "invalid chat.send params: idempotencyKey must not be empty",
        ));
    }
    let images = images_of(&p.attachments);
    if p.message.trim().is_empty() && images.is_empty() {
        return Err(ErrorShape::invalid(
            "invalid chat.send params: message is empty",
        ));
    }
    let run_id = p.idempotency_key.clone();
    let started = agent
        .start(StartRun {
            session_key: session_key(&p.session_key),
            message: p.message,
            images,
            run_id: run_id.clone(),
            origin: Some(origin),
            created_via: "operator".into(),
            model: None,
        })
        .await
        .map_err(start_err)?;
    Ok(match started {
        Started::Started { message_seq } => {
            json!({ "runId": run_id, "status": "started", "messageSeq": message_seq })
        }
        Started::InFlight => json!({ "runId": run_id, "status": "in_flight" }),
        Started::Finished(o) => json!({ "runId": run_id, "status": o.status }),
    })
}

/// A transcript entry as `chat.history` shows it.
pub fn display(l: &Line, max_chars: usize) -> Option<Value> {
    let cut = |t: &str| -> String {
        if t.chars().count() > max_chars {
            format!("{}…", t.chars().take(max_chars).collect::<String>())
        } else {
            t.to_owned()
        }
    };
    let meta = |run_id: &Option<String>| {
        let mut m =
            json!({ "id": format!("m{}", l.seq), "seq": l.seq, "transcriptPosition": l.seq });
        if let Some(r) = run_id {
            m["runId"] = json!(r);
        }
        m
    };
    Some(match &l.message {
        Message::User {
            text,
            images,
            timestamp,
            run_id,
        } => {
            let mut content =
                vec![json!({ "type": "text", "text": cut(&crate::transcript::as_typed(text)) })];
            for i in images {
                content.push(json!({ "type": "image", "mimeType": i.mime_type, "data": i.data }));
            }
            json!({ "role": "user", "content": content, "timestamp": timestamp, "__openclaw": meta(run_id) })
        }
        Message::Assistant {
            text,
            tool_calls,
            stop_reason,
            model,
            usage,
            timestamp,
            run_id,
        } => {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({ "type": "text", "text": cut(text) }));
            }
            for c in tool_calls {
                let args: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
                content.push(
                    json!({ "type": "toolCall", "id": c.id, "name": c.name, "arguments": args }),
                );
            }
            let (provider, model) = model
                .split_once('/')
                .unwrap_or(("openclaw", model.as_str()));
            json!({ "role": "assistant", "content": content, "timestamp": timestamp, "provider": provider,
                "model": model, "stopReason": stop_reason.as_str(),
                "usage": { "input": usage.input, "output": usage.output, "totalTokens": usage.input + usage.output },
                "__openclaw": meta(run_id) })
        }
        Message::ToolResult {
            tool_call_id,
            tool_name,
            text,
            images,
            is_error,
            timestamp,
        } => {
            let mut content = vec![json!({ "type": "text", "text": cut(text) })];
            for i in images {
                content.push(json!({ "type": "image", "mimeType": i.mime_type, "data": i.data }));
            }
            json!({ "role": "toolResult", "toolCallId": tool_call_id, "toolName": tool_name, "content": content,
                "isError": is_error, "timestamp": timestamp, "__openclaw": meta(&None) })
        }
        Message::Reset { timestamp } => {
            let mut m = meta(&None);
            m["kind"] = json!("reset");
            json!({ "role": "system", "content": [{ "type": "text", "text": "Reset" }], "timestamp": timestamp, "__openclaw": m })
        }
    })
}

fn defaults(agent: &Agent) -> Value {
    let (provider, model) = agent
        .config()
        .model
        .as_deref()
        .and_then(|m| m.split_once('/'))
        .map_or((Value::Null, Value::Null), |(p, m)| (json!(p), json!(m)));
    let context = agent
        .config()
        .model
        .as_deref()
        .and_then(|m| agent.config().model_ref(m).ok())
        .map(|r| r.context_tokens);
    json!({ "modelProvider": provider, "model": model, "contextTokens": context, "agentRuntime": "pincer", "modelSelectionTarget": "session" })
}

/// A session row as `sessions.list` shows it.
pub fn row(agent: &Agent, e: &SessionEntry) -> Value {
    let active = agent.active_in(&e.key);
    let display = e.key.rsplit(':').next().unwrap_or(&e.key);
    let (mp, m) = e
        .model_override
        .as_deref()
        .or(agent.config().model.as_deref())
        .and_then(|m| m.split_once('/'))
        .map_or((Value::Null, Value::Null), |(p, m)| (json!(p), json!(m)));
    // The reference's words: `running`, then `failed` after an error, else `idle`.
    let status = match &e.last_run {
        _ if !active.is_empty() => "running",
        Some(r) if r.status == "error" => "failed",
        _ => "idle",
    };
    let mut row = json!({
        "key": e.key, "kind": if e.key.contains(":group:") { "group" } else { "direct" },
        "classification": if e.key.ends_with(":main") { "main" } else { "other" },
        "agentId": AGENT_ID, "isMain": e.key == "agent:main:main", "sessionId": e.session_id,
        "updatedAt": e.updated_at, "createdAt": e.created_at, "createdVia": e.created_via,
        "label": e.label, "displayName": e.label.clone().unwrap_or_else(|| display.to_owned()),
        "lastMessagePreview": e.last_preview, "status": status,
        "modelProvider": mp, "model": m, "inputTokens": e.input_tokens, "outputTokens": e.output_tokens,
        "totalTokens": e.input_tokens + e.output_tokens, "hasActiveRun": !active.is_empty(),
        "activeRunIds": active, "lifecycleRevision": e.lifecycle_revision, "snapshotAt": pincer_os::now_ms(),
    });
    if let (Some(r), Some(o)) = (&e.last_run, row.as_object_mut()) {
        o.insert("lastRunId".into(), json!(r.run_id));
        o.insert("startedAt".into(), json!(r.started_at));
        o.insert("endedAt".into(), json!(r.ended_at));
        o.insert(
            "runtimeMs".into(),
            json!(r.ended_at.saturating_sub(r.started_at)),
        );
        o.insert("abortedLastRun".into(), json!(r.status == "aborted"));
        if let Some(err) = &r.error {
            o.insert("lastRunError".into(), json!(err));
        }
    }
    row
}

/// `chat.history` and `chat.startup`: the newest `limit` entries (oldest first) after
/// skipping `offset` of the newest; `nextOffset` pages further back.
pub fn chat_history(agent: &Agent, method: &str, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: ChatHistoryParams = params(method, raw)?;
    let key = session_key(&p.session_key);
    let limit = (p.limit.unwrap_or(HISTORY_DEFAULT as u64) as usize).clamp(1, HISTORY_MAX);
    let offset = p.offset.unwrap_or(0) as usize;
    let max_chars = (p.max_chars.unwrap_or(100_000) as usize).clamp(1, 500_000);
    let Some(entry) = agent.store().get(&key) else {
        return Ok(
            json!({ "sessionKey": key, "sessionId": null, "messages": [], "hasMore": false,
            "totalMessages": 0, "pendingInputs": { "items": [], "total": 0 }, "defaults": defaults(agent) }),
        );
    };
    let lines = agent.store().transcript(&key).map_err(store_err)?;
    let last_seq = lines.last().map_or(0, |l| l.seq);
    let cursor = json!({ "agentId": AGENT_ID, "generation": entry.lifecycle_revision, "lastSeq": last_seq,
        "sessionId": entry.session_id, "version": 1 });
    let delta_cursor = pincer_protocol::base64url::encode(cursor.to_string().as_bytes());
    if let Some(c) = &p.cursor {
        if p.offset.is_some() {
            return Err(ErrorShape::invalid(format!(
                "invalid {method} params: cursor cannot be combined with offset"
            )));
        }
        let old: Value = pincer_protocol::base64url::decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ErrorShape::invalid(format!("invalid {method} params: unreadable cursor"))
            })?;
        let since = old["lastSeq"].as_u64().unwrap_or(0);
        let newer: Vec<&Line> = lines.iter().filter(|l| l.seq > since).collect();
        let same = old["sessionId"] == entry.session_id.as_str()
            && old["generation"].as_u64() == Some(entry.lifecycle_revision)
            && since <= last_seq;
        if !same || newer.len() > 200 {
            return Ok(json!({ "kind": "reset", "sessionKey": key }));
        }
        // As the reference pages them: `session.message`-style envelopes, not bare entries.
        let session = row(agent, &entry);
        let messages: Vec<Value> = newer
            .iter()
            .filter_map(|l| {
                let m = display(l, max_chars)?;
                Some(
                    json!({ "sessionKey": key, "agentId": AGENT_ID, "message": m,
                    "messageId": format!("m{}", l.seq), "messageSeq": l.seq, "session": session }),
                )
            })
            .collect();
        return Ok(
            json!({ "kind": "delta", "sessionKey": key, "messages": messages,
            "deltaCursor": delta_cursor, "sessionInfo": row(agent, &entry) }),
        );
    }
    let shown: Vec<Value> = lines.iter().filter_map(|l| display(l, max_chars)).collect();
    let total = shown.len();
    let end = total.saturating_sub(offset);
    let start = end.saturating_sub(limit);
    let mut out = json!({
        "sessionKey": key, "sessionId": entry.session_id, "messages": shown[start..end],
        "hasMore": start > 0, "totalMessages": total, "offset": offset,
        "pendingInputs": { "items": [], "total": 0 }, "defaults": defaults(agent),
        "sessionInfo": row(agent, &entry), "deltaCursor": delta_cursor,
    });
    if start > 0 {
        out["nextOffset"] = json!(offset + (end - start));
    }
    Ok(out)
}

/// `chat.abort`: the `chat aborted` events go out before this answers.
pub async fn chat_abort(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: ChatAbortParams = params("chat.abort", raw)?;
    let ids = agent
        .abort(&session_key(&p.session_key), p.run_id.as_deref())
        .await;
    Ok(json!({ "ok": true, "aborted": !ids.is_empty(), "runIds": ids }))
}

/// `chat.inject`: an assistant message from the gateway into an existing session.
pub async fn chat_inject(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: ChatInjectParams = params("chat.inject", raw)?;
    if p.message.is_empty() {
        return Err(ErrorShape::invalid(
            "invalid chat.inject params: message must not be empty",
        ));
    }
    let key = session_key(&p.session_key);
    if agent.store().get(&key).is_none() {
        return Err(ErrorShape::invalid("session not found"));
    }
    let text = match p.label.as_deref() {
        Some(l) => format!(
            "[{}]\n\n{}",
            l.chars().take(100).collect::<String>(),
            p.message
        ),
        None => p.message,
    };
    let now = pincer_os::now_ms();
    let m = Message::Assistant {
        text: text.clone(),
        tool_calls: vec![],
        stop_reason: StopReason::Stop,
        model: "openclaw/gateway-injected".into(),
        usage: Usage::default(),
        timestamp: now,
        run_id: None,
    };
    let store = agent.store().clone();
    let k = key.clone();
    let seq = tokio::task::spawn_blocking(move || store.append(&k, &m))
        .await
        .map_err(|e| ErrorShape::unavailable(e.to_string()))?
        .map_err(store_err)?;
    let _ = agent.store().checkpoint();
    let id = format!("m{seq}");
    agent.host().emit("chat", &json!({
        "runId": format!("inject-{id}"), "sessionKey": key, "agentId": AGENT_ID, "seq": 0, "state": "final",
        "message": { "role": "assistant", "content": [{ "type": "text", "text": text }], "timestamp": now,
            "stopReason": "stop", "usage": { "input": 0, "output": 0, "totalTokens": 0 } },
    }), Audience::Readers);
    Ok(json!({ "ok": true, "messageId": id }))
}

/// Whether an `agent` message is a session command (`/new` or `/reset`, any case, maybe with
/// text after it), which the reference reserves to `operator.admin`; the text after it.
pub fn session_command(message: &str) -> Option<&str> {
    let m = message.trim_start();
    for cmd in ["/new", "/reset"] {
        if m.len() >= cmd.len() && m[..cmd.len()].eq_ignore_ascii_case(cmd) {
            let rest = &m[cmd.len()..];
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                return Some(rest.trim());
            }
        }
    }
    None
}

/// What [`agent_accept`] started, for [`agent_final`].
pub enum Accepted {
    /// A run to wait for.
    Run {
        /// Its id.
        run_id: String,
    },
    /// A repeat of a finished run: only its final is sent.
    Done(Box<Value>),
}

/// `agent`: starts the run; the `accepted` payload (or, for a repeat of a finished run, the
/// final one alone).
pub async fn agent_accept(
    agent: &Arc<Agent>,
    origin: u64,
    raw: Option<&str>,
) -> Result<(Option<Value>, Accepted), ErrorShape> {
    let p: AgentParams = params("agent", raw)?;
    if p.message.is_empty() || p.idempotency_key.is_empty() {
        return Err(ErrorShape::invalid(
            "invalid agent params: message and idempotencyKey must not be empty",
        ));
    }
    let key = session_key(p.session_key.as_deref().unwrap_or("main"));
    // `/new` / `/reset` (the gateway checked the admin scope): the session starts over, and
    // the text after the command, if any, is the first turn of the new one.
    let mut message = p.message.clone();
    if let Some(rest) = session_command(&p.message) {
        let store = agent.store().clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || {
            store.ensure(&k, "run", pincer_os::now_ms())?;
            store.reset(&k, pincer_os::now_ms())
        })
        .await
        .map_err(|e| ErrorShape::unavailable(e.to_string()))?
        .map_err(store_err)?;
        if rest.is_empty() {
            let now = pincer_os::now_ms();
            let o = Outcome {
                status: "ok",
                text: String::new(),
                stop_reason: "stop".into(),
                error: None,
                started_at: now,
                ended_at: now,
                model: None,
                usage: Usage::default(),
                tools: vec![],
            };
            return Ok((
                None,
                Accepted::Done(Box::new(final_payload(agent, &p.idempotency_key, &o))),
            ));
        }
        message = rest.to_owned();
    }
    let model = match (p.provider, p.model) {
        (Some(pr), Some(m)) => Some(format!("{pr}/{m}")),
        (None, Some(m)) if m.contains('/') => Some(m),
        _ => None,
    };
    let run_id = p.idempotency_key.clone();
    let started = agent
        .start(StartRun {
            session_key: key.clone(),
            message,
            images: images_of(&p.attachments),
            run_id: run_id.clone(),
            origin: Some(origin),
            created_via: "run".into(),
            model,
        })
        .await
        .map_err(start_err)?;
    match started {
        Started::Finished(o) => Ok((
            None,
            Accepted::Done(Box::new(final_payload(agent, &run_id, &o))),
        )),
        Started::Started { .. } | Started::InFlight => Ok((
            Some(
                json!({ "runId": run_id, "sessionKey": key, "agentId": AGENT_ID, "status": "accepted", "acceptedAt": pincer_os::now_ms() }),
            ),
            Accepted::Run { run_id },
        )),
    }
}

fn final_payload(agent: &Agent, run_id: &str, o: &Outcome) -> Value {
    let summary = match o.status {
        "ok" => "completed",
        "aborted" => "aborted",
        _ => o.error.as_deref().unwrap_or("error"),
    };
    let (provider, model) = o
        .model
        .as_deref()
        .and_then(|m| m.split_once('/'))
        .map_or((Value::Null, Value::Null), |(p, m)| (json!(p), json!(m)));
    let _ = agent;
    json!({
        "runId": run_id, "status": if o.status == "aborted" { "ok" } else { o.status }, "summary": summary,
        "stopReason": o.stop_reason,
        "result": { "payloads": [{ "text": o.text, "mediaUrl": null }], "meta": {
            "durationMs": o.ended_at.saturating_sub(o.started_at),
            "agentMeta": { "provider": provider, "model": model,
                "usage": { "input": o.usage.input, "output": o.usage.output, "total": o.usage.input + o.usage.output } },
            "aborted": o.status == "aborted" } },
    })
}

/// The final answer of an `agent` request.
pub async fn agent_final(agent: &Arc<Agent>, accepted: Accepted) -> Result<Value, ErrorShape> {
    let run_id = match accepted {
        Accepted::Done(v) => return Ok(*v),
        Accepted::Run { run_id } => run_id,
    };
    // Runs end by themselves (idle and tool deadlines bound them); wait as long as it takes.
    loop {
        if let Some(o) = agent.wait(&run_id, Duration::from_secs(3600)).await {
            let v = final_payload(agent, &run_id, &o);
            if o.status == "error" {
                let msg = o.error.clone().unwrap_or_else(|| "run failed".into());
                return Err(ErrorShape::unavailable(msg).with_details(
                    json!({ "runId": run_id, "status": "error", "summary": v["summary"] }),
                ));
            }
            return Ok(v);
        }
        if !agent.is_active(&run_id) {
            return Err(ErrorShape::unavailable("the run ended without an outcome"));
        }
    }
}

/// `agent.wait`.
pub async fn agent_wait(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: AgentWaitParams = params("agent.wait", raw)?;
    let t = Duration::from_millis(p.timeout_ms.unwrap_or(30_000).min(600_000));
    Ok(match agent.wait(&p.run_id, t).await {
        None => json!({ "runId": p.run_id, "status": "timeout" }),
        Some(o) => {
            let mut v = json!({ "runId": p.run_id, "status": if o.status == "aborted" { "ok" } else { o.status },
                "startedAt": o.started_at, "endedAt": o.ended_at, "stopReason": o.stop_reason,
                "terminalReply": { "disposition": if o.text.is_empty() { "empty" } else { "visible" }, "text": o.text } });
            if let Some(e) = o.error {
                v["error"] = json!(e);
            }
            v
        }
    })
}

/// `agent.identity.get`.
pub fn identity(agent: &Agent) -> Value {
    let name = &agent.config().name;
    let source = if name == "Assistant" {
        "default"
    } else {
        "config"
    };
    json!({ "agentId": AGENT_ID, "name": name, "nameSource": source,
        "avatar": name.chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_else(|| "A".into()) })
}

/// `sessions.list`.
pub fn sessions_list(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionsListParams = params("sessions.list", raw)?;
    let limit = (p.limit.unwrap_or(100) as usize).clamp(1, 1000);
    let offset = p.offset.unwrap_or(0) as usize;
    let all: Vec<SessionEntry> = agent
        .store()
        .list()
        .into_iter()
        .filter(|e| {
            p.search.as_deref().is_none_or(|s| {
                e.key.contains(s) || e.label.as_deref().is_some_and(|l| l.contains(s))
            })
        })
        .collect();
    let total = all.len();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| row(agent, e))
        .collect();
    let more = offset + page.len() < total;
    let mut d = defaults(agent);
    d["thinkingLevels"] = json!([]);
    Ok(
        json!({ "ts": pincer_os::now_ms(), "path": agent.store().dir().display().to_string(), "count": page.len(),
        "totalCount": total, "limitApplied": limit, "nextOffset": if more { json!(offset + page.len()) } else { Value::Null },
        "hasMore": more, "owners": [], "defaults": d, "sessions": page }),
    )
}

/// `sessions.preview`.
pub fn sessions_preview(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionsPreviewParams = params("sessions.preview", raw)?;
    let limit = (p.limit.unwrap_or(5) as usize).clamp(1, 50);
    let max = (p.max_chars.unwrap_or(200) as usize).max(20);
    let previews: Vec<Value> = p.keys.iter().take(100).map(|k| {
        let key = session_key(k);
        match agent.store().transcript(&key) {
            Err(_) => json!({ "key": k, "status": "missing", "items": [] }),
            Ok(lines) => {
                let items: Vec<Value> = lines.iter().rev().filter_map(|l| match &l.message {
                    Message::User { text, .. } => Some(json!({ "role": "user", "text": text.chars().take(max).collect::<String>() })),
                    Message::Assistant { text, .. } if !text.is_empty() => Some(json!({ "role": "assistant", "text": text.chars().take(max).collect::<String>() })),
                    _ => None,
                }).take(limit).collect::<Vec<_>>().into_iter().rev().collect();
                json!({ "key": k, "status": "ok", "items": items })
            }
        }
    }).collect();
    Ok(json!({ "ts": pincer_os::now_ms(), "previews": previews }))
}

/// `sessions.resolve`.
pub fn sessions_resolve(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionKeyParams = params("sessions.resolve", raw)?;
    let key = match (&p.key, &p.label) {
        (Some(k), _) => session_key(k),
        (None, Some(l)) => agent
            .store()
            .list()
            .into_iter()
            .find(|e| e.label.as_deref() == Some(l))
            .map(|e| e.key)
            .ok_or_else(|| ErrorShape::invalid(format!("no session labelled \"{l}\"")))?,
        (None, None) => {
            return Err(ErrorShape::invalid(
                "invalid sessions.resolve params: key or label is required",
            ))
        }
    };
    if agent.store().get(&key).is_none() && !p.allow_missing.unwrap_or(true) {
        return Err(ErrorShape::invalid("session not found"));
    }
    Ok(json!({ "ok": true, "key": key, "agentId": AGENT_ID }))
}

fn required_key(method: &str, p: &SessionKeyParams) -> Result<String, ErrorShape> {
    p.key.as_deref().map(session_key).ok_or_else(|| {
        ErrorShape::invalid(format!(
            "invalid {method} params: must have required property 'key'"
        ))
    })
}

/// `sessions.patch` (`label`, `model`; other keys are accepted and ignored).
pub async fn sessions_patch(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionKeyParams = params("sessions.patch", raw)?;
    let key = required_key("sessions.patch", &p)?;
    let model = match &p.model {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(m)) => {
            agent.config().model_ref(m).map_err(ErrorShape::invalid)?;
            Some(Some(m.clone()))
        }
        Some(_) => {
            return Err(ErrorShape::invalid(
                "invalid sessions.patch params: model must be a string or null",
            ))
        }
    };
    let store = agent.store().clone();
    let (label, k) = (p.label.clone(), key.clone());
    let entry = tokio::task::spawn_blocking(move || {
        store.ensure(&k, "operator", pincer_os::now_ms())?;
        store.update(&k, |e| {
            if let Some(l) = label {
                e.label = Some(l).filter(|l| !l.is_empty());
            }
            if let Some(m) = model {
                e.model_override = m;
            }
        })
    })
    .await
    .map_err(|e| ErrorShape::unavailable(e.to_string()))?
    .map_err(store_err)?;
    crate::watch::changed(agent, &key, json!({ "reason": "patch" }));
    Ok(
        json!({ "ok": true, "path": agent.store().dir().display().to_string(), "key": key, "entry": entry }),
    )
}

/// `sessions.reset`: the same session id, a reset marker, the model override kept.
pub async fn sessions_reset(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionKeyParams = params("sessions.reset", raw)?;
    let key = required_key("sessions.reset", &p)?;
    agent.abort(&key, None).await;
    let store = agent.store().clone();
    let k = key.clone();
    let entry = tokio::task::spawn_blocking(move || {
        store.ensure(&k, "operator", pincer_os::now_ms())?;
        store.reset(&k, pincer_os::now_ms())
    })
    .await
    .map_err(|e| ErrorShape::unavailable(e.to_string()))?
    .map_err(store_err)?;
    crate::watch::changed(agent, &key, json!({ "reason": "reset" }));
    Ok(json!({ "ok": true, "key": key, "entry": entry }))
}

/// `sessions.delete`.
pub async fn sessions_delete(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: SessionKeyParams = params("sessions.delete", raw)?;
    let key = required_key("sessions.delete", &p)?;
    agent.abort(&key, None).await;
    let store = agent.store().clone();
    let k = key.clone();
    tokio::task::spawn_blocking(move || store.delete(&k))
        .await
        .map_err(|e| ErrorShape::unavailable(e.to_string()))?
        .map_err(store_err)?;
    crate::watch::changed(agent, &key, json!({ "reason": "delete" }));
    Ok(json!({ "ok": true, "key": key, "deleted": true, "archived": [] }))
}

/// `models.list`: every configured model; the default tagged.
pub fn models_list(agent: &Agent) -> Value {
    let default = agent.config().model.as_deref();
    let mut models = Vec::new();
    for (pid, p) in &agent.config().providers {
        for m in &p.models {
            let full = format!("{pid}/{}", m.id);
            let mut v = json!({ "id": m.id, "name": m.name.clone().unwrap_or_else(|| m.id.clone()), "provider": pid,
                "reasoning": false, "thinkingLevels": [], "thinkingDefault": "off", "available": true,
                "manualSelectionAllowed": true, "contextWindow": m.context_tokens.unwrap_or(32_768) });
            if default == Some(full.as_str()) {
                v["tags"] = json!(["default"]);
            }
            models.push(v);
        }
    }
    json!({ "models": models })
}

/// `snapshot.sessionDefaults` of `hello-ok`, as the reference fills it.
pub fn session_defaults(model_configured: bool) -> Value {
    json!({ "defaultAgentId": AGENT_ID, "modelConfigured": model_configured, "ownership": "sole",
        "selectionRequired": false, "mainKey": "main", "mainSessionKey": "agent:main:main", "scope": "per-sender" })
}

/// `wake`: `now` starts a run with the text; `next-heartbeat` queues it for the next turn.
pub async fn wake(agent: &Arc<Agent>, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: pincer_protocol::agent::WakeParams = params("wake", raw)?;
    if p.text.is_empty() {
        return Err(ErrorShape::invalid(
            "invalid wake params: text must not be empty",
        ));
    }
    let key = session_key(p.session_key.as_deref().unwrap_or("main"));
    match p.mode {
        pincer_protocol::agent::WakeMode::NextHeartbeat => agent.queue_system_event(&key, &p.text),
        pincer_protocol::agent::WakeMode::Now => {
            agent
                .start(StartRun {
                    session_key: key,
                    message: p.text,
                    images: vec![],
                    run_id: format!("wake:{}", pincer_os::uuid_v4()),
                    origin: None,
                    created_via: "wake".into(),
                    model: None,
                })
                .await
                .map_err(start_err)?;
        }
    }
    Ok(json!({ "ok": true }))
}

/// `send`: a message to `to` on a channel, through the host's channels; refused as the
/// reference refuses it when no channel (or not that one) is configured.
pub async fn send(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: pincer_protocol::agent::SendParams = params("send", raw)?;
    let text = p.message.clone().unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ErrorShape::invalid(
            "invalid send params: message is required (media is not supported yet)",
        ));
    }
    match agent.host().deliver(p.channel.clone(), p.to.clone(), text).await {
        Ok(mut receipt) => {
            receipt["runId"] = json!(p.idempotency_key);
            Ok(receipt)
        }
        Err(e) => Err(match (e.code.as_str(), p.channel.as_deref()) {
            ("NO_CHANNELS", None) => ErrorShape::invalid("Error: Channel is required (no configured channels detected). Configure one in gateway.toml ([channels.<name>]), or pass channel after enabling it."),
            ("NO_CHANNELS" | "UNKNOWN_CHANNEL", Some(c)) => ErrorShape::unavailable(format!("OutboundDeliveryError: channel \"{c}\" is not configured on this gateway"))
                .with_details(json!({ "code": "OUTBOUND_DELIVERY_FAILED" })),
            ("BAD_TARGET", _) => ErrorShape::invalid(format!("invalid send params: {}", e.message)),
            _ => ErrorShape::unavailable(format!("OutboundDeliveryError: {}", e.message))
                .with_details(json!({ "code": "OUTBOUND_DELIVERY_FAILED" })),
        }),
    }
}

fn cron_err(e: crate::cron::CronError) -> ErrorShape {
    match e {
        crate::cron::CronError::Io(e) => {
            ErrorShape::unavailable(format!("cron jobs not saved: {e}"))
        }
        e => ErrorShape::invalid(e.to_string()),
    }
}

fn job_json(j: &crate::cron::Job) -> Value {
    let mut v = serde_json::to_value(j).unwrap_or_default();
    v["nextRunAtMs"] = j.state["nextRunAtMs"].clone();
    v["agentId"] = json!(AGENT_ID);
    v
}

fn job_id(method: &str, p: &pincer_protocol::agent::CronJobParams) -> Result<String, ErrorShape> {
    p.id.clone().or_else(|| p.job_id.clone()).ok_or_else(|| {
        ErrorShape::invalid(format!(
            "invalid {method} params: must have required property 'id'"
        ))
    })
}

/// The `cron.*` methods.
pub async fn cron(
    agent: &Arc<Agent>,
    method: &str,
    raw: Option<&str>,
) -> Result<Value, ErrorShape> {
    let cron = agent.cron();
    let now = pincer_os::now_ms();
    match method {
        "cron.status" => Ok(json!({ "enabled": true, "triggersEnabled": true,
            "storePath": cron.path().display().to_string(), "storage": "json",
            "jobs": cron.list().len(), "nextWakeAtMs": cron.next_wake() })),
        "cron.list" => Ok(json!({ "jobs": cron.list().iter().map(job_json).collect::<Vec<_>>() })),
        "cron.add" => {
            let p: pincer_protocol::agent::CronAddParams = params(method, raw)?;
            let job = cron.add(&p, now).map_err(cron_err)?;
            let v = job_json(&job);
            agent.host().emit("cron", &json!({ "jobId": job.id, "action": "added", "job": v, "nextRunAtMs": v["nextRunAtMs"] }), Audience::Readers);
            Ok(v)
        }
        "cron.remove" => {
            let p: pincer_protocol::agent::CronJobParams = params(method, raw)?;
            let job = cron.remove(&job_id(method, &p)?).map_err(cron_err)?;
            agent.host().emit(
                "cron",
                &json!({ "jobId": job.id, "action": "removed", "job": job_json(&job) }),
                Audience::Readers,
            );
            Ok(json!({ "ok": true, "removed": true }))
        }
        "cron.update" => {
            let p: pincer_protocol::agent::CronJobParams = params(method, raw)?;
            let id = job_id(method, &p)?;
            let job = cron
                .update(&id, p.patch.as_ref().unwrap_or(&json!({})), now)
                .map_err(cron_err)?;
            let v = job_json(&job);
            agent.host().emit(
                "cron",
                &json!({ "jobId": id, "action": "updated", "job": v }),
                Audience::Readers,
            );
            Ok(v)
        }
        "cron.get" => {
            let p: pincer_protocol::agent::CronJobParams = params(method, raw)?;
            let id = job_id(method, &p)?;
            cron.list()
                .iter()
                .find(|j| j.id == id)
                .map(job_json)
                .ok_or_else(|| ErrorShape::invalid("unknown cron job"))
        }
        "cron.run" => {
            let p: pincer_protocol::agent::CronJobParams = params(method, raw)?;
            let id = job_id(method, &p)?;
            let job = cron
                .list()
                .into_iter()
                .find(|j| j.id == id)
                .ok_or_else(|| ErrorShape::invalid("unknown cron job"))?;
            let due = job.state["nextRunAtMs"].as_u64().is_some_and(|t| t <= now);
            let go = match p.mode.as_deref().unwrap_or("force") {
                "due" => job.enabled && due,
                "if-enabled" => job.enabled,
                _ => true,
            };
            if !go {
                return Ok(
                    json!({ "ok": true, "ran": false, "reason": if job.enabled { "not-due" } else { "disabled" } }),
                );
            }
            let run_id = crate::cron::fire(agent, &id).await.map_err(cron_err)?;
            Ok(json!({ "ok": true, "ran": true, "runId": run_id }))
        }
        "cron.runs" => {
            let p: pincer_protocol::agent::CronJobParams = params(method, raw)?;
            let id = job_id(method, &p)?;
            let all = cron.runs(&id).map_err(cron_err)?;
            let limit = (p.limit.unwrap_or(50) as usize).clamp(1, 200);
            let offset = p.offset.unwrap_or(0) as usize;
            let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            let more = offset + page.len() < all.len();
            Ok(
                json!({ "entries": page, "total": all.len(), "offset": offset, "limit": limit, "hasMore": more,
                "nextOffset": if more { json!(offset + page.len()) } else { Value::Null } }),
            )
        }
        other => Err(ErrorShape::invalid(format!("unknown method: {other}"))),
    }
}
