//! A scripted fake model provider for tests: a real HTTP/1.1 server on `127.0.0.1` that
//! speaks one dialect's streaming wire format (`openai-completions`, `openai-responses` or
//! `anthropic-messages`), records every request and answers each from a FIFO script of
//! [`Reply`]s (`Text{chunks:["ok"]}` once the script is empty). Only tokio, serde_json and std;
//! included with `#[path = "../../tests/support/fake_provider.rs"] mod fake_provider;`.
//!
//! Requests must carry `content-length` (a chunked request body is refused with `400`).
//! Streams are `200`, `content-type: text/event-stream`, `transfer-encoding: chunked` with one
//! SSE event per HTTP chunk, and `connection: close`. Events look like the real providers'
//! (ids, `created`, `sequence_number`, `message_start` … `message_stop`); usage is always
//! [`INPUT_TOKENS`] in and [`OUTPUT_TOKENS`] out. [`Reply::Truncated`] ends the HTTP body
//! cleanly but leaves the dialect's terminal event out.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Prompt tokens every stream reports.
pub const INPUT_TOKENS: u64 = 100;
/// Completion tokens every stream reports.
pub const OUTPUT_TOKENS: u64 = 20;

/// The wire dialect the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `POST /v1/chat/completions`, `chat.completion.chunk`s and `data: [DONE]`.
    Completions,
    /// `POST /v1/responses`, typed `response.*` events.
    Responses,
    /// `POST /v1/messages`, `message_start` … `message_stop`.
    Anthropic,
}

impl Dialect {
    /// The `api` name a gateway's config gives it.
    pub fn api(self) -> &'static str {
        match self {
            Dialect::Completions => "openai-completions",
            Dialect::Responses => "openai-responses",
            Dialect::Anthropic => "anthropic-messages",
        }
    }

    /// The path it answers.
    pub fn path(self) -> &'static str {
        match self {
            Dialect::Completions => "/v1/chat/completions",
            Dialect::Responses => "/v1/responses",
            Dialect::Anthropic => "/v1/messages",
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streamed text deltas, `delay_ms` between them.
    Text {
        /// The deltas.
        chunks: Vec<String>,
        /// The pause before each delta after the first.
        delay_ms: u64,
    },
    /// A tool call (its arguments in ~3 fragments), after `preamble` text if any.
    ToolCall {
        /// The call id (`call_…` / `toolu_…`; the `call_id` for Responses).
        id: String,
        /// The tool.
        name: String,
        /// The arguments, JSON text.
        arguments: String,
        /// Text streamed before the call.
        preamble: Option<String>,
    },
    /// A plain HTTP error with a JSON body.
    Status {
        /// The status code.
        code: u16,
        /// The body.
        body: String,
        /// A `retry-after` header, seconds.
        retry_after: Option<u64>,
    },
    /// `200` and a stream whose second event's data is not JSON (the rest follows normally).
    Malformed,
    /// `200`, two text deltas, then the end of the body without the terminal event.
    Truncated,
    /// `200`, one text delta, then nothing until the client disconnects or the fake is dropped.
    Stall,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path (`/v1/chat/completions`).
    pub path: String,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
}

impl Recorded {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    changed: Notify,
    disconnects: AtomicUsize,
    serial: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running fake; it stops when dropped.
pub struct FakeProvider {
    dialect: Dialect,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and serves `dialect`.
    pub async fn start(dialect: Dialect) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake provider");
        let addr = listener.local_addr().expect("the fake provider's address");
        let state = Arc::new(State::default());
        let (shutdown, stop) = watch::channel(false);
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(serve(sock, dialect, shared.clone(), stop.clone()));
            }
        });
        FakeProvider {
            dialect,
            addr,
            state,
            shutdown,
            accept,
        }
    }

    /// The provider's `baseUrl`: `http://127.0.0.1:<port>/v1` for the OpenAI dialects,
    /// `http://127.0.0.1:<port>` for Anthropic.
    pub fn base_url(&self) -> String {
        match self.dialect {
            Dialect::Anthropic => format!("http://{}", self.addr),
            _ => format!("http://{}/v1", self.addr),
        }
    }

    /// A pincer-gateway `gateway.toml` whose default model is `<provider>/<model>` on this
    /// fake; `agent_extra` lines go under `[agent]`.
    pub fn gateway_toml(&self, provider: &str, model: &str, agent_extra: &str) -> String {
        format!(
            "[agent]\nmodel = \"{provider}/{model}\"\n{agent_extra}\n\n[models.providers.{provider}]\nbase_url = \"{}\"\napi = \"{}\"\napi_key = \"test-key\"\nmodels = [{{ id = \"{model}\", name = \"Fake Model\" }}]\n",
            self.base_url(),
            self.dialect.api()
        )
    }

    /// The same for the reference's `openclaw.json`: its `models`, `agents` and `tools` keys
    /// (Tool Search off, so `nodes` is a direct tool as here).
    pub fn openclaw_config(&self, provider: &str, model: &str) -> Value {
        json!({
            "models": { "mode": "merge", "providers": { provider: {
                "baseUrl": self.base_url(), "apiKey": "test-key", "api": self.dialect.api(),
                "models": [{ "id": model, "name": "Fake Model" }] } } },
            "agents": { "defaults": { "model": { "primary": format!("{provider}/{model}") } } },
            "tools": { "toolSearch": false }
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues the answer to a later request.
    pub fn push(&self, reply: Reply) {
        lock(&self.state.script).push_back(reply);
    }

    /// The requests so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// Waits until `n` requests arrived; panics after `within`.
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
                panic!(
                    "the fake {:?} provider got {} request(s) within {within:?}, expected {n}: {paths:?}",
                    self.dialect,
                    got.len()
                );
            }
        }
    }

    /// How many streams the client closed before the fake finished sending.
    pub fn disconnects(&self) -> usize {
        self.state.disconnects.load(Ordering::SeqCst)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.accept.abort();
    }
}

/// A request as read off the socket.
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request; `Err(Some((code, why)))` to refuse it, `Err(None)` if the client left.
async fn read_request(sock: &mut TcpStream) -> Result<Request, Option<(u16, String)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(Some((431, "request head too large".into())));
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if method != "POST" {
        return Err(Some((405, format!("{method} is not POST"))));
    }
    if header("transfer-encoding").is_some() {
        return Err(Some((
            400,
            "chunked request bodies are refused; send content-length".into(),
        )));
    }
    let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return Err(Some((411, "content-length required".into())));
    };
    if len > 64 << 20 {
        return Err(Some((413, "body too large".into())));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    Ok(Request {
        path,
        headers,
        body,
    })
}

async fn serve(
    mut sock: TcpStream,
    dialect: Dialect,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let req = match read_request(&mut sock).await {
        Ok(r) => r,
        Err(None) => return,
        Err(Some((code, why))) => return refuse(sock, code, &why).await,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return refuse(sock, 400, "the body is not JSON").await;
    };
    let model = body["model"].as_str().unwrap_or("fake-model").to_owned();
    lock(&state.requests).push(Recorded {
        path: req.path.clone(),
        headers: req.headers,
        body,
    });
    state.changed.notify_waiters();
    if req.path != dialect.path() {
        return refuse(sock, 404, &format!("no route {}", req.path)).await;
    }
    let reply = lock(&state.script).pop_front().unwrap_or(Reply::Text {
        chunks: vec!["ok".into()],
        delay_ms: 0,
    });
    let serial = state.serial.fetch_add(1, Ordering::SeqCst) + 1;
    let text = |chunks: &[&str]| Reply::Text {
        chunks: chunks.iter().map(|c| c.to_string()).collect(),
        delay_ms: 0,
    };
    let (events, delay, ending) = match &reply {
        Reply::Status {
            code,
            body,
            retry_after,
        } => {
            let extra = retry_after.map(|s| format!("retry-after: {s}\r\n"));
            let _ = write_plain(&mut sock, *code, body, extra.as_deref().unwrap_or("")).await;
            return linger(sock).await;
        }
        Reply::Text { delay_ms, .. } => (
            events(dialect, &reply, &model, serial),
            *delay_ms,
            Ending::Finish,
        ),
        Reply::ToolCall { .. } => (events(dialect, &reply, &model, serial), 0, Ending::Finish),
        Reply::Malformed => {
            let mut evs = events(dialect, &text(&["Hello", " world"]), &model, serial);
            evs[1].data = "{\"this is\": not json".into();
            (evs, 0, Ending::Finish)
        }
        Reply::Truncated => {
            let mut evs = events(dialect, &text(&["Hel", "lo"]), &model, serial);
            let last = evs.iter().rposition(|e| e.delta).unwrap_or(0);
            evs.truncate(last + 1);
            (evs, 0, Ending::Finish)
        }
        Reply::Stall => {
            let mut evs = events(dialect, &text(&["Hel"]), &model, serial);
            let first = evs.iter().position(|e| e.delta).unwrap_or(0);
            evs.truncate(first + 1);
            (evs, 0, Ending::Hang)
        }
    };
    let finished = stream(sock, &events, Duration::from_millis(delay), ending, stop).await;
    if !finished {
        state.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The last chunk, then close.
    Finish,
    /// Keep the connection open and silent.
    Hang,
}

/// Writes the stream; false if the client went away before it was all sent.
async fn stream(
    sock: TcpStream,
    events: &[Event],
    delay: Duration,
    ending: Ending,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let (mut rd, mut wr) = sock.into_split();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if wr.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let mut deltas = 0;
    for e in events {
        if e.delta {
            deltas += 1;
            if deltas > 1 && !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closed(&mut rd) => return false,
                }
            }
        }
        let wire = e.wire();
        let chunk = format!("{:x}\r\n{wire}\r\n", wire.len());
        if wr.write_all(chunk.as_bytes()).await.is_err() || wr.flush().await.is_err() {
            return false;
        }
    }
    if ending == Ending::Hang {
        return tokio::select! {
            _ = closed(&mut rd) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
    }
    if wr.write_all(b"0\r\n\r\n").await.is_err() {
        return false;
    }
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), closed(&mut rd)).await;
    true
}

/// Resolves when the peer closed its side (or the socket failed).
async fn closed<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn refuse(mut sock: TcpStream, code: u16, why: &str) {
    let body = json!({"error": {"message": why, "type": "invalid_request_error"}}).to_string();
    let _ = write_plain(&mut sock, code, &body, "").await;
    linger(sock).await;
}

/// Closes after the client read the answer (closing with unread input would reset it).
async fn linger(mut sock: TcpStream) {
    let _ = sock.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), closed(&mut sock)).await;
}

async fn write_plain<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    body: &str,
    extra: &str,
) -> std::io::Result<()> {
    let reason = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.flush().await
}

/// One server-sent event.
struct Event {
    name: Option<&'static str>,
    data: String,
    /// A text delta (the delay goes before these; truncation cuts after them).
    delta: bool,
}

impl Event {
    fn wire(&self) -> String {
        match self.name {
            Some(n) => format!("event: {n}\ndata: {}\n\n", self.data),
            None => format!("data: {}\n\n", self.data),
        }
    }
}

/// What a reply streams: text deltas, then maybe one tool call.
struct Parts<'a> {
    text: Vec<&'a str>,
    call: Option<(&'a str, &'a str, &'a str)>,
    fragments: Vec<&'a str>,
}

fn parts(reply: &Reply) -> Parts<'_> {
    match reply {
        Reply::Text { chunks, .. } => Parts {
            text: chunks.iter().map(String::as_str).collect(),
            call: None,
            fragments: vec![],
        },
        Reply::ToolCall {
            id,
            name,
            arguments,
            preamble,
        } => Parts {
            text: preamble.iter().map(String::as_str).collect(),
            call: Some((id, name, arguments)),
            fragments: thirds(arguments),
        },
        _ => Parts {
            text: vec![],
            call: None,
            fragments: vec![],
        },
    }
}

/// `s` in about three pieces, cut at char boundaries.
fn thirds(s: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    for k in [1, 2] {
        let mut at = s.len() * k / 3;
        while !s.is_char_boundary(at) {
            at += 1;
        }
        cuts.push(at);
    }
    cuts.push(s.len());
    cuts.windows(2)
        .map(|w| &s[w[0]..w[1]])
        .filter(|p| !p.is_empty())
        .collect()
}

fn events(dialect: Dialect, reply: &Reply, model: &str, serial: usize) -> Vec<Event> {
    let p = parts(reply);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match dialect {
        Dialect::Completions => completions(&p, model, serial, created),
        Dialect::Responses => responses(&p, model, serial, created),
        Dialect::Anthropic => anthropic(&p, model, serial),
    }
}

fn completions(p: &Parts<'_>, model: &str, serial: usize, created: u64) -> Vec<Event> {
    let id = format!("chatcmpl-fake{serial}");
    let chunk = |delta: Value, finish: Value, is_delta: bool| {
        Event {
        name: None,
        data: json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_fake", "choices": [{"index": 0, "delta": delta, "logprobs": null,
            "finish_reason": finish}], "usage": null})
        .to_string(),
        delta: is_delta,
    }
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
        false,
    )];
    for t in &p.text {
        out.push(chunk(json!({"content": t}), Value::Null, true));
    }
    if let Some((call_id, name, _)) = p.call {
        let start = json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}]});
        out.push(chunk(start, Value::Null, false));
        for f in &p.fragments {
            let frag = json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]});
            out.push(chunk(frag, Value::Null, false));
        }
    }
    let finish = if p.call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    out.push(chunk(json!({}), finish.into(), false));
    let usage = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": "fp_fake", "choices": [], "usage": {"prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}});
    out.push(Event {
        name: None,
        data: usage.to_string(),
        delta: false,
    });
    out.push(Event {
        name: None,
        data: "[DONE]".into(),
        delta: false,
    });
    out
}

fn responses(p: &Parts<'_>, model: &str, serial: usize, created: u64) -> Vec<Event> {
    let (msg_id, fc_id) = (format!("msg_fake{serial}"), format!("fc_fake{serial}"));
    let response = |status: &str, output: &[Value], usage: Value| {
        json!({"response": {"id": format!("resp_fake{serial}"), "object": "response",
            "created_at": created, "status": status, "error": null, "incomplete_details": null,
            "model": model, "output": output, "parallel_tool_calls": true, "store": false,
            "usage": usage}})
    };
    let mut evs = vec![
        (
            "response.created",
            response("in_progress", &[], Value::Null),
        ),
        (
            "response.in_progress",
            response("in_progress", &[], Value::Null),
        ),
    ];
    let mut output = Vec::new();
    if !p.text.is_empty() {
        let at = |extra: Value| {
            let mut v = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        let full: String = p.text.concat();
        let item = json!({"id": msg_id, "type": "message", "status": "in_progress",
            "role": "assistant", "content": []});
        evs.push((
            "response.output_item.added",
            json!({"output_index": 0, "item": item}),
        ));
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        evs.push(("response.content_part.added", at(json!({"part": part}))));
        for t in &p.text {
            let delta = at(json!({"delta": t, "logprobs": []}));
            evs.push(("response.output_text.delta", delta));
        }
        let done = at(json!({"text": full, "logprobs": []}));
        evs.push(("response.output_text.done", done));
        let part = json!({"type": "output_text", "text": full, "annotations": []});
        evs.push(("response.content_part.done", at(json!({"part": part}))));
        let item = json!({"id": msg_id, "type": "message", "status": "completed",
            "role": "assistant", "content": [part]});
        evs.push((
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ));
        output.push(item);
    }
    if let Some((call_id, name, arguments)) = p.call {
        let index = output.len();
        let item = |status: &str, args: &str| {
            json!({"id": fc_id, "type": "function_call", "status": status, "arguments": args,
                "call_id": call_id, "name": name})
        };
        let added = json!({"output_index": index, "item": item("in_progress", "")});
        evs.push(("response.output_item.added", added));
        for f in &p.fragments {
            let delta = json!({"item_id": fc_id, "output_index": index, "delta": f});
            evs.push(("response.function_call_arguments.delta", delta));
        }
        let done = json!({"item_id": fc_id, "output_index": index, "arguments": arguments});
        evs.push(("response.function_call_arguments.done", done));
        let done = item("completed", arguments);
        let item_done = json!({"output_index": index, "item": done});
        evs.push(("response.output_item.done", item_done));
        output.push(done);
    }
    let usage = json!({"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS});
    evs.push(("response.completed", response("completed", &output, usage)));
    named(evs, true)
}

fn anthropic(p: &Parts<'_>, model: &str, serial: usize) -> Vec<Event> {
    let message = json!({"id": format!("msg_fake{serial}"), "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 1}});
    let mut evs = vec![("message_start", json!({"message": message}))];
    let mut index = 0;
    let delta = |index: usize, delta: Value| json!({"index": index, "delta": delta});
    if !p.text.is_empty() {
        let block = json!({"index": index, "content_block": {"type": "text", "text": ""}});
        evs.push(("content_block_start", block));
        evs.push(("ping", json!({})));
        for t in &p.text {
            let d = delta(index, json!({"type": "text_delta", "text": t}));
            evs.push(("content_block_delta", d));
        }
        evs.push(("content_block_stop", json!({"index": index})));
        index += 1;
    }
    if let Some((id, name, _)) = p.call {
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        evs.push((
            "content_block_start",
            json!({"index": index, "content_block": block}),
        ));
        for f in std::iter::once(&"").chain(&p.fragments) {
            let d = delta(
                index,
                json!({"type": "input_json_delta", "partial_json": f}),
            );
            evs.push(("content_block_delta", d));
        }
        evs.push(("content_block_stop", json!({"index": index})));
    }
    let reason = if p.call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let end = json!({"delta": {"stop_reason": reason, "stop_sequence": null},
        "usage": {"output_tokens": OUTPUT_TOKENS}});
    evs.push(("message_delta", end));
    evs.push(("message_stop", json!({})));
    named(evs, false)
}

/// Named events, their `type` (and with `seq`, `sequence_number`) stamped in.
fn named(evs: Vec<(&'static str, Value)>, seq: bool) -> Vec<Event> {
    evs.into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = name.into();
            if seq {
                data["sequence_number"] = i.into();
            }
            let delta = name == "response.output_text.delta"
                || data["delta"]["type"].as_str() == Some("text_delta");
            Event {
                name: Some(name),
                data: data.to_string(),
                delta,
            }
        })
        .collect()
}
