//! One run: the user's turn is in the transcript; call the model, stream its answer out as
//! events, run the tools it asks for, call it again with their results, until it answers or a
//! bound is reached. Everything that can go wrong ends the run with a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::{AgentConfig, ModelRef, NO_MODEL};
use crate::events::RunEvents;
use crate::host::Host;
use crate::http;
use crate::provider::{StreamError, StreamEvent, TurnRequest};
use crate::sse::SseParser;
use crate::store::LastRun;
use crate::store::Store;
use crate::transcript::{Message, StopReason, ToolCall, Usage};
use crate::{prompt, tools};

/// Largest server-sent event accepted from a provider.
pub const MAX_SSE_EVENT: usize = 1024 * 1024;
/// Retries after HTTP 429 (waiting `retry-after`, at most [`MAX_RETRY_WAIT`] each).
pub const MAX_RETRIES: u32 = 2;
/// Longest wait for one retry.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `ok`, `error` or `aborted`.
    pub status: &'static str,
    /// The reply text (possibly partial).
    pub text: String,
    /// Why it ended.
    pub stop_reason: String,
    /// What went wrong.
    pub error: Option<String>,
    /// Started, ms.
    pub started_at: u64,
    /// Ended, ms.
    pub ended_at: u64,
    /// `<provider>/<model>`, when one was called.
    pub model: Option<String>,
    /// Tokens.
    pub usage: Usage,
    /// Tools that succeeded.
    pub tools: Vec<String>,
}

/// What a run needs.
pub struct RunCtx {
    /// The runtime (for the tools that schedule jobs or post to sessions).
    pub agent: Arc<crate::runtime::Agent>,
    /// The host.
    pub host: Arc<dyn Host>,
    /// The configuration.
    pub config: Arc<AgentConfig>,
    /// The store.
    pub store: Arc<Store>,
    /// The HTTP client.
    pub http: http::Client,
    /// Set to true to abort.
    pub abort: watch::Receiver<bool>,
    /// Events.
    pub events: RunEvents,
    /// The model for this run (`None`: the session's or the default).
    pub model: Option<String>,
    /// Text the model call in progress has streamed so far (kept when the run is aborted).
    pub partial: String,
}

enum Failure {
    Aborted,
    Error {
        message: String,
        kind: &'static str,
        detail: Option<Value>,
    },
}

fn fail(message: impl Into<String>) -> Failure {
    Failure::Error {
        message: message.into(),
        kind: "unknown",
        detail: None,
    }
}

/// Runs to the end and returns how it ended (the events have been sent).
pub async fn run(mut ctx: RunCtx) -> Outcome {
    let started_at = pincer_os::now_ms();
    let mut out = Outcome {
        status: "ok",
        text: String::new(),
        stop_reason: "stop".into(),
        error: None,
        started_at,
        ended_at: 0,
        model: None,
        usage: Usage::default(),
        tools: vec![],
    };
    ctx.events.status("preparing_workspace");
    let system = prompt::system_prompt(&ctx.config);
    ctx.events.status("preparing_context");
    ctx.events.agent(
        "lifecycle",
        json!({ "phase": "start", "startedAt": started_at }),
    );
    let result = turn(&mut ctx, &system, &mut out).await;
    let ended_at = pincer_os::now_ms();
    out.ended_at = ended_at;
    out.text = ctx.events.chat_text().to_owned();
    if let Err(Failure::Error { message, .. }) = &result {
        // Kept in the history (as the reference does), so a reload still says why there is no
        // answer; saved before the `chat error` event, which makes clients reload it.
        let note = Message::Assistant {
            text: message.clone(),
            tool_calls: vec![],
            stop_reason: StopReason::Error,
            model: out.model.clone().unwrap_or_default(),
            usage: Usage::default(),
            timestamp: ended_at,
            run_id: Some(ctx.events.run_id.clone()),
        };
        if ctx.store.get(&ctx.events.session_key).is_some() {
            if let Err(Failure::Error { message, .. }) = append(&ctx, &note).await {
                tracing::warn!(run = %ctx.events.run_id, "error note not saved: {message}");
            }
        }
    }
    let ev = &mut ctx.events;
    match result {
        Ok(()) => {
            ev.agent("usage", json!({ "outputTokens": out.usage.output }));
            ev.agent("lifecycle", json!({ "phase": "finishing", "stopReason": "stop", "aborted": false, "livenessState": "working", "endedAt": ended_at }));
            ev.agent(
                "lifecycle",
                json!({ "phase": "model", "provider": null, "model": null }),
            );
            let disposition = if out.text.is_empty() {
                "empty"
            } else {
                "visible"
            };
            ev.agent("lifecycle", json!({
                "phase": "end", "startedAt": started_at, "endedAt": ended_at, "stopReason": "stop",
                "aborted": false, "livenessState": "working",
                "terminalReply": { "disposition": disposition, "text": out.text },
                "terminalReceipt": { "runId": ev.run_id, "sessionId": ev.session_id, "turnId": ev.run_id,
                    "successfulToolNames": out.tools, "rerouted": false, "terminalDisposition": disposition },
                "executionSettled": true,
            }));
            ev.chat_final("stop");
        }
        Err(Failure::Aborted) => {
            out.status = "aborted";
            out.stop_reason = "rpc".into();
            ev.chat_aborted("rpc");
            ev.agent("lifecycle", json!({ "phase": "end", "status": "cancelled", "aborted": true, "stopReason": "rpc", "startedAt": started_at, "endedAt": ended_at }));
        }
        Err(Failure::Error {
            message,
            kind,
            detail,
        }) => {
            tracing::warn!(run = %ev.run_id, session = %ev.session_key, error = %message, "run failed");
            out.status = "error";
            out.stop_reason = "error".into();
            out.error = Some(message.clone());
            ev.agent("lifecycle", json!({ "phase": "error", "error": message, "aborted": false, "stopReason": "error", "startedAt": started_at, "endedAt": ended_at, "executionSettled": true }));
            ev.chat_error(&message, kind, detail);
        }
    }
    let last = LastRun {
        run_id: ctx.events.run_id.clone(),
        status: out.status.to_owned(),
        error: out.error.as_ref().map(|e| e.chars().take(500).collect()),
        started_at,
        ended_at,
    };
    let usage = out.usage;
    let recorded = ctx.store.update(&ctx.events.session_key, |e| {
        e.last_run = Some(last);
        e.input_tokens = usage.input;
        e.output_tokens = usage.output;
    });
    if recorded.is_err() {
        let _ = ctx.store.checkpoint();
    }
    out
}

/// The model ↔ tools loop.
async fn turn(ctx: &mut RunCtx, system: &str, out: &mut Outcome) -> Result<(), Failure> {
    // Aborted while it waited for the session: it never reaches the provider.
    if *ctx.abort.borrow() {
        return Err(Failure::Aborted);
    }
    let key = ctx.events.session_key.clone();
    let entry = ctx
        .store
        .get(&key)
        .ok_or_else(|| fail("session not found"))?;
    let reference = ctx
        .model
        .clone()
        .or(entry.model_override.clone())
        .or(ctx.config.model.clone())
        .ok_or_else(|| fail(NO_MODEL))?;
    let config = ctx.config.clone();
    let model = config.model_ref(&reference).map_err(fail)?;
    out.model = Some(reference.clone());
    let api_key = model.provider.resolved_key().map_err(|var| {
        fail(format!(
            "provider \"{}\": api_key names ${{{var}}}, which is not set in the gateway's environment",
            model.provider_id
        ))
    })?;
    let lines = ctx
        .store
        .transcript(&key)
        .map_err(|e| fail(e.to_string()))?;
    let mut history = prompt::history(lines, model.context_tokens, system.len());
    let specs = tools::specs();
    ctx.events.status("starting_model");
    let run_id = ctx.events.run_id.clone();
    for call in 0..ctx.config.max_model_calls {
        ctx.events.next_model_call();
        ctx.events.agent(
            "lifecycle",
            json!({ "phase": "model", "provider": model.provider_id, "model": model.model }),
        );
        let item = format!("{}:{}", run_id, call + 1);
        let req = TurnRequest {
            model: &model.model,
            system,
            messages: &history,
            tools: &specs,
        };
        ctx.partial.clear();
        let streamed = stream(ctx, &model, api_key.as_deref(), &req, &item).await;
        if let (Err(Failure::Aborted), false) = (&streamed, ctx.partial.is_empty()) {
            // What the user saw stays in the history, marked as aborted (as the reference keeps it).
            let partial = Message::Assistant {
                text: std::mem::take(&mut ctx.partial),
                tool_calls: vec![],
                stop_reason: StopReason::Aborted,
                model: reference.clone(),
                usage: Usage::default(),
                timestamp: pincer_os::now_ms(),
                run_id: Some(run_id.clone()),
            };
            if let Err(e) = append(ctx, &partial).await {
                tracing::warn!(run = %run_id, "partial reply not saved: {}", match e { Failure::Error { message, .. } => message, Failure::Aborted => String::new() });
            }
        }
        let (text, calls, stop, usage) = streamed?;
        out.usage.input += usage.input;
        out.usage.output += usage.output;
        let assistant = Message::Assistant {
            text: text.clone(),
            tool_calls: calls.clone(),
            stop_reason: stop,
            model: reference.clone(),
            usage,
            timestamp: pincer_os::now_ms(),
            run_id: Some(run_id.clone()),
        };
        append(ctx, &assistant).await?;
        history.push(assistant);
        if calls.is_empty() {
            return Ok(());
        }
        if !text.is_empty() {
            ctx.events.agent("item", json!({ "kind": "preamble", "title": "Preamble", "phase": "end", "progressText": text, "itemId": format!("commentary-{call}-{run_id}") }));
        }
        for c in calls {
            let result = tool(ctx, &c).await?;
            if !result.is_error && !out.tools.contains(&c.name) {
                out.tools.push(c.name.clone());
            }
            append(ctx, &result_message(&c, &result)).await?;
            history.push(result_message(&c, &result));
        }
    }
    Err(fail(format!(
        "the model kept calling tools: stopped after {} model calls ([agent] max_model_calls)",
        ctx.config.max_model_calls
    )))
}

fn result_message(c: &ToolCall, r: &tools::ToolOutput) -> Message {
    Message::ToolResult {
        tool_call_id: c.id.clone(),
        tool_name: c.name.clone(),
        text: r.text.clone(),
        images: r.images.clone(),
        is_error: r.is_error,
        timestamp: pincer_os::now_ms(),
    }
}

async fn append(ctx: &RunCtx, m: &Message) -> Result<u64, Failure> {
    let store = ctx.store.clone();
    let key = ctx.events.session_key.clone();
    let owned = m.clone();
    let seq = tokio::task::spawn_blocking(move || store.append(&key, &owned))
        .await
        .map_err(|e| fail(format!("transcript write: {e}")))?
        .map_err(|e| fail(format!("transcript not saved: {e}")))?;
    crate::watch::appended(&ctx.agent, &ctx.events.session_key, seq, m);
    Ok(seq)
}

async fn tool(ctx: &mut RunCtx, c: &ToolCall) -> Result<tools::ToolOutput, Failure> {
    let args: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
    let item = format!("tool:{}", c.id);
    let started = pincer_os::now_ms();
    ctx.events.flush();
    ctx.events.agent("item", json!({ "itemId": item, "toolCallId": c.id, "name": c.name, "kind": "tool", "phase": "start", "title": c.name, "status": "running", "startedAt": started }));
    ctx.events.agent(
        "tool",
        json!({ "phase": "start", "name": c.name, "toolCallId": c.id, "args": args }),
    );
    let timeout = Duration::from_millis(ctx.config.tool_timeout_ms);
    let run = tools::run(
        &ctx.agent,
        &c.name,
        &c.arguments,
        timeout,
        ctx.config.max_tool_output,
    );
    let mut abort = ctx.abort.clone();
    let r = tokio::select! {
        r = run => r,
        _ = abort.wait_for(|a| *a) => return Err(Failure::Aborted),
    };
    ctx.events.agent("tool", json!({
        "phase": "result", "name": c.name, "toolCallId": c.id, "isError": r.is_error, "commandBearing": c.name == "exec",
        "result": { "content": [{ "type": "text", "text": r.text }], "details": r.details },
    }));
    ctx.events.agent("item", json!({ "itemId": item, "toolCallId": c.id, "name": c.name, "kind": "tool", "phase": "end", "title": r.title, "status": if r.is_error { "failed" } else { "completed" }, "endedAt": pincer_os::now_ms() }));
    Ok(r)
}

type Streamed = (String, Vec<ToolCall>, StopReason, Usage);

/// One model call: the request (with retries after 429), then its stream.
async fn stream(
    ctx: &mut RunCtx,
    model: &ModelRef<'_>,
    api_key: Option<&str>,
    req: &TurnRequest<'_>,
    item: &str,
) -> Result<Streamed, Failure> {
    let api = model.provider.api;
    let url = format!(
        "{}{}",
        model.provider.base_url.trim_end_matches('/'),
        api.path()
    );
    let body = serde_json::to_vec(&api.body(req)).unwrap_or_default();
    let headers = api.headers(api_key);
    let wait_headers = Duration::from_secs(model.provider.timeout_seconds.unwrap_or(60).max(1));
    let provider_err = |status: u16, text: &str| {
        let what = match status {
            401 | 403 => "refused the API key",
            404 => "does not know this model or path",
            429 => "is rate limiting",
            500..=599 => "failed",
            _ => "refused the request",
        };
        Failure::Error {
            message: format!(
                "provider \"{}\" {what} (HTTP {status}): {}",
                model.provider_id,
                crate::provider::clip(text)
            ),
            kind: if status == 429 {
                "rate_limit"
            } else {
                "unknown"
            },
            detail: Some(
                json!({ "provider": model.provider_id, "model": model.model, "httpStatus": status, "providerErrorMessagePreview": crate::provider::clip(text) }),
            ),
        }
    };
    let mut attempt = 0;
    let mut res = loop {
        let mut abort = ctx.abort.clone();
        let sent = tokio::select! {
            r = ctx.http.post(&url, &headers, body.clone(), wait_headers) => r,
            _ = abort.wait_for(|a| *a) => return Err(Failure::Aborted),
        };
        let mut res = sent.map_err(|e| Failure::Error {
            message: format!("provider \"{}\" unreachable: {e}", model.provider_id),
            kind: "unknown",
            detail: Some(json!({ "provider": model.provider_id, "model": model.model })),
        })?;
        if res.status == 200 {
            break res;
        }
        let text = res.error_text().await;
        if res.status == 429 && attempt < MAX_RETRIES {
            attempt += 1;
            let wait = Duration::from_secs(res.retry_after.unwrap_or(1)).min(MAX_RETRY_WAIT);
            ctx.events.agent("run_status", json!({ "phase": "retrying", "attempt": attempt, "maxAttempts": MAX_RETRIES + 1, "reason": "rate_limit" }));
            tracing::info!(provider = %model.provider_id, wait_ms = wait.as_millis() as u64, "provider rate limited; retrying");
            let mut abort = ctx.abort.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => continue,
                _ = abort.wait_for(|a| *a) => return Err(Failure::Aborted),
            }
        }
        return Err(provider_err(res.status, &text));
    };
    let mut parser = SseParser::new(MAX_SSE_EVENT);
    let mut decoder = api.decoder();
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut usage = Usage::default();
    let idle = Duration::from_millis(ctx.config.stream_idle_ms);
    let malformed = |e: StreamError| Failure::Error {
        message: format!("provider \"{}\": {e}", model.provider_id),
        kind: "unknown",
        detail: Some(json!({ "provider": model.provider_id, "model": model.model })),
    };
    let mut handle = |evs: Vec<StreamEvent>, events: &mut RunEvents| -> Option<StopReason> {
        let mut stop = None;
        for ev in evs {
            match ev {
                StreamEvent::Text(t) => {
                    events.text(&t, item);
                    text.push_str(&t);
                }
                StreamEvent::ToolCall(c) => calls.push(c),
                StreamEvent::Usage(u) => usage = u,
                StreamEvent::Done(r) => stop = Some(r),
            }
        }
        stop
    };
    loop {
        let flush_at = ctx.events.flush_at();
        let mut abort = ctx.abort.clone();
        let chunk = tokio::select! {
            biased;
            _ = abort.wait_for(|a| *a) => {
                ctx.partial = text;
                return Err(Failure::Aborted);
            }
            _ = sleep_until(flush_at) => { ctx.events.flush(); continue; }
            c = tokio::time::timeout(idle, res.chunk()) => c,
        };
        let chunk = match chunk {
            Err(_) => {
                return Err(fail(format!(
                    "provider \"{}\" sent nothing for {} s ([agent] stream_idle_ms)",
                    model.provider_id,
                    idle.as_secs()
                )))
            }
            Ok(Err(e)) => {
                return Err(fail(format!(
                    "provider \"{}\": the stream broke: {e}",
                    model.provider_id
                )))
            }
            Ok(Ok(None)) => {
                let evs = decoder.finish().map_err(malformed)?;
                let stop = handle(evs, &mut ctx.events).unwrap_or(StopReason::Stop);
                return Ok((text, calls, stop, usage));
            }
            Ok(Ok(Some(c))) => c,
        };
        let sse = parser
            .feed(&chunk)
            .map_err(|e| fail(format!("provider \"{}\": {e}", model.provider_id)))?;
        for ev in sse {
            let evs = decoder.feed(&ev).map_err(malformed)?;
            if let Some(stop) = handle(evs, &mut ctx.events) {
                return Ok((text, calls, stop, usage));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
