//! A fake Telegram Bot API for tests: a real HTTP/1.1 server on `127.0.0.1` that speaks the Bot
//! API's wire format: `POST /bot<token>/<method>` with a JSON body or `multipart/form-data`
//! (a photo), answered with `{ok:true, result}` or `{ok:false, error_code, description,
//! parameters}`. Only tokio, serde_json and std; included with
//! `#[path = "../../tests/support/fake_telegram.rs"] mod fake_telegram;`.
//!
//! What it does like the real one: `getUpdates` long-polls (waits up to `timeout` seconds for
//! an update, returns at most `limit`, and forgets every update below `offset`, so an offset is
//! a confirmation); a wrong token is `401 Unauthorized`; `sendMessage`, `editMessageText` and
//! `sendPhoto` answer a `Message` with a fresh `message_id`; an `editMessageText` with the same
//! text is `400 message is not modified`; HTML that does not parse (unbalanced or unknown tags)
//! is `400 can't parse entities`. Every call is recorded with when it arrived.
//!
//! Faults are scripted per method ([`Fault`]): an error envelope (429 with `retry_after`, 409,
//! 401, 500) or a connection closed without an answer.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The bot the fake is.
pub const BOT_ID: i64 = 7_000_001;
/// Its username.
pub const BOT_USERNAME: &str = "pincer_test_bot";
/// The token it accepts.
pub const TOKEN: &str = "7000001:AAtestTOKENsecret_value-1234";

/// A multipart file: field name, file name, content type, bytes.
pub type File = (String, String, String, Vec<u8>);

/// A scripted failure for the next call of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `{ok:false, error_code, description, parameters?}` with that HTTP status.
    Error {
        /// HTTP status and `error_code`.
        code: u16,
        /// `description`.
        description: String,
        /// `parameters.retry_after`.
        retry_after: Option<u64>,
    },
    /// Read the request, then close the connection without a byte.
    Drop,
}

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: String,
    /// JSON params (for multipart: the text fields).
    pub params: Value,
    /// A multipart file: field name, file name, content type, bytes.
    pub file: Option<File>,
    /// When it arrived.
    pub at: Instant,
    /// The token in the path was the right one.
    pub token_ok: bool,
    /// The `message_id` of the message it sent or edited, once answered.
    pub message_id: Option<i64>,
}

#[derive(Default)]
struct State {
    updates: VecDeque<Value>,
    next_update: i64,
    next_message: i64,
    calls: Vec<Call>,
    faults: Vec<(String, Fault)>,
    /// Text of each message by id (for "not modified").
    texts: Vec<(i64, String)>,
    /// When each update was first handed out by `getUpdates` (the last 1000).
    delivered: VecDeque<(i64, Instant)>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeTelegram {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeTelegram {
    /// Listens on a free loopback port.
    pub async fn start() -> FakeTelegram {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeTelegram {
            addr,
            state: Arc::new(Mutex::new(State {
                next_update: 100,
                next_message: 1,
                ..State::default()
            })),
            changed: Arc::new(Notify::new()),
        };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve(tcp).await });
            }
        });
        fake
    }

    /// `api_root` for the gateway.
    pub fn api_root(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `[channels.telegram]` section pointing at the fake, plus `extra` lines.
    pub fn gateway_toml(&self, extra: &str) -> String {
        format!(
            "\n[channels.telegram]\nbot_token = \"{TOKEN}\"\napi_root = \"{}\"\npoll_timeout_s = 2\n{extra}\n",
            self.api_root()
        )
    }

    /// Queues an update (its `update_id` is set); returns the id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let mut st = lock(&self.state);
        let id = st.next_update;
        st.next_update += 1;
        update["update_id"] = json!(id);
        st.updates.push_back(update);
        drop(st);
        self.changed.notify_waiters();
        id
    }

    /// A private text message from user `from` (chat id = user id).
    pub fn dm(&self, from: i64, name: &str, text: &str) -> i64 {
        let mid = self.message_id();
        self.push_update(json!({ "message": {
            "message_id": mid, "date": 1_796_000_000,
            "from": { "id": from, "is_bot": false, "first_name": name, "username": name.to_lowercase() },
            "chat": { "id": from, "type": "private", "first_name": name },
            "text": text,
        }}))
    }

    /// A group text message.
    pub fn group(&self, chat: i64, from: i64, name: &str, text: &str) -> i64 {
        let mid = self.message_id();
        self.push_update(json!({ "message": {
            "message_id": mid, "date": 1_796_000_000,
            "from": { "id": from, "is_bot": false, "first_name": name },
            "chat": { "id": chat, "type": "supergroup", "title": "Family" },
            "text": text,
        }}))
    }

    fn message_id(&self) -> i64 {
        let mut st = lock(&self.state);
        st.next_message += 1;
        st.next_message
    }

    /// Makes the next call of `method` fail with `fault`.
    pub fn fault(&self, method: &str, fault: Fault) {
        lock(&self.state).faults.push((method.to_owned(), fault));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// Calls of `method` so far.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// When `getUpdates` first handed out update `id`.
    pub fn delivered_at(&self, id: i64) -> Option<Instant> {
        lock(&self.state)
            .delivered
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, t)| *t)
    }

    /// Updates still held (not confirmed by an offset).
    pub fn held(&self) -> usize {
        lock(&self.state).updates.len()
    }

    /// Waits until `pred` holds over the calls, up to `within`; the calls then. Panics with
    /// the calls seen at the deadline.
    pub async fn wait_for(&self, within: Duration, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = calls
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.params))
                    .collect();
                panic!(
                    "fake telegram: condition not met within {within:?}; calls:\n{}",
                    seen.join("\n")
                );
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    async fn serve(&self, mut tcp: TcpStream) {
        let Some((path, headers, body)) = read_request(&mut tcp).await else {
            return;
        };
        let (token, method) = match path.strip_prefix("/bot").and_then(|p| p.split_once('/')) {
            Some((t, m)) => (t.to_owned(), m.to_owned()),
            None => {
                let _ = respond(
                    &mut tcp,
                    404,
                    &json!({ "ok": false, "error_code": 404, "description": "Not Found" }),
                )
                .await;
                return;
            }
        };
        let ct = header(&headers, "content-type").unwrap_or_default();
        let (params, file) = if ct.starts_with("multipart/form-data") {
            let boundary = ct.split("boundary=").nth(1).unwrap_or("").trim().to_owned();
            multipart(&body, &boundary)
        } else {
            (serde_json::from_slice(&body).unwrap_or(json!({})), None)
        };
        let token_ok = token == TOKEN;
        let call = Call {
            method: method.clone(),
            params: params.clone(),
            file,
            at: Instant::now(),
            token_ok,
            message_id: None,
        };
        let (index, fault) = {
            let mut st = lock(&self.state);
            st.calls.push(call);
            let i = st.faults.iter().position(|(m, _)| *m == method);
            (st.calls.len() - 1, i.map(|i| st.faults.remove(i).1))
        };
        self.changed.notify_waiters();
        if !token_ok {
            let _ = respond(
                &mut tcp,
                401,
                &json!({ "ok": false, "error_code": 401, "description": "Unauthorized" }),
            )
            .await;
            return;
        }
        match fault {
            Some(Fault::Drop) => return,
            Some(Fault::Error {
                code,
                description,
                retry_after,
            }) => {
                let mut v = json!({ "ok": false, "error_code": code, "description": description });
                if let Some(r) = retry_after {
                    v["parameters"] = json!({ "retry_after": r });
                }
                let _ = respond(&mut tcp, code, &v).await;
                return;
            }
            None => {}
        }
        let result = match method.as_str() {
            "getMe" => Ok(
                json!({ "id": BOT_ID, "is_bot": true, "first_name": "Pincer", "username": BOT_USERNAME,
                "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false }),
            ),
            "deleteWebhook" | "sendChatAction" | "setMyCommands" | "deleteMyCommands" => {
                Ok(json!(true))
            }
            "getUpdates" => Ok(self.get_updates(&params).await),
            "sendMessage" | "sendPhoto" | "sendDocument" => self.message(&method, &params),
            "editMessageText" => self.edit(&params),
            _ => Err((404, "Not Found: method not found".to_owned())),
        };
        if let Ok(r) = &result {
            if let Some(id) = r["message_id"].as_i64() {
                lock(&self.state).calls[index].message_id = Some(id);
                self.changed.notify_waiters();
            }
        }
        let _ = match result {
            Ok(r) => respond(&mut tcp, 200, &json!({ "ok": true, "result": r })).await,
            Err((code, d)) => {
                respond(
                    &mut tcp,
                    code,
                    &json!({ "ok": false, "error_code": code, "description": d }),
                )
                .await
            }
        };
    }

    async fn get_updates(&self, p: &Value) -> Value {
        let timeout = Duration::from_secs(p["timeout"].as_u64().unwrap_or(0).min(50));
        let limit = p["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let mut st = lock(&self.state);
                if let Some(offset) = p["offset"].as_i64() {
                    st.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                }
                if !st.updates.is_empty() {
                    let out: Vec<Value> = st.updates.iter().take(limit).cloned().collect();
                    let now = Instant::now();
                    for u in &out {
                        let id = u["update_id"].as_i64().unwrap_or(0);
                        if !st.delivered.iter().any(|(d, _)| *d == id) {
                            st.delivered.push_back((id, now));
                            if st.delivered.len() > 1000 {
                                st.delivered.pop_front();
                            }
                        }
                    }
                    return Value::Array(out);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return json!([]);
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    fn message(&self, method: &str, p: &Value) -> Result<Value, (u16, String)> {
        let chat = chat_of(p).ok_or((400, "Bad Request: chat not found".to_owned()))?;
        let text = p["text"].as_str().unwrap_or("").to_owned();
        if method == "sendMessage" {
            check_text(&text, p["parse_mode"].as_str())?;
        }
        let mut st = lock(&self.state);
        st.next_message += 1;
        let id = st.next_message;
        st.texts.push((id, text.clone()));
        Ok(
            json!({ "message_id": id, "date": 1_796_000_000, "chat": { "id": chat, "type": "private" },
                   "from": { "id": BOT_ID, "is_bot": true, "first_name": "Pincer" }, "text": text }),
        )
    }

    fn edit(&self, p: &Value) -> Result<Value, (u16, String)> {
        let id = p["message_id"]
            .as_i64()
            .ok_or((400, "Bad Request: message to edit not found".to_owned()))?;
        let text = p["text"].as_str().unwrap_or("").to_owned();
        check_text(&text, p["parse_mode"].as_str())?;
        let mut st = lock(&self.state);
        let Some(slot) = st.texts.iter_mut().find(|(m, _)| *m == id) else {
            return Err((400, "Bad Request: message to edit not found".into()));
        };
        if slot.1 == text {
            return Err((400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message".into()));
        }
        slot.1 = text.clone();
        Ok(
            json!({ "message_id": id, "date": 1_796_000_000, "chat": { "id": p["chat_id"], "type": "private" }, "text": text }),
        )
    }
}

/// Telegram's checks on a text: not empty, at most 4096 characters (after entity parsing),
/// and, with `parse_mode: HTML`, only its tags, balanced, and no bare `<` or `&`.
fn check_text(text: &str, mode: Option<&str>) -> Result<(), (u16, String)> {
    let visible = if mode == Some("HTML") {
        strip_html(text)?
    } else {
        text.to_owned()
    };
    if visible.trim().is_empty() {
        return Err((400, "Bad Request: message text is empty".into()));
    }
    if visible.chars().count() > 4096 {
        return Err((400, "Bad Request: message is too long".into()));
    }
    Ok(())
}

/// The visible text of Telegram HTML, or the error Telegram gives.
pub fn strip_html(text: &str) -> Result<String, (u16, String)> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "blockquote",
        "span",
        "tg-spoiler",
    ];
    let bad = |why: &str| (400, format!("Bad Request: can't parse entities: {why}"));
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let end = rest.find('>').ok_or_else(|| bad("unclosed start tag"))?;
            let inner = &rest[1..end];
            if let Some(name) = inner.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name.trim()) {
                    return Err(bad("unmatched end tag"));
                }
            } else {
                let name = inner.split_whitespace().next().unwrap_or("");
                if !TAGS.contains(&name) {
                    return Err(bad(&format!("unsupported start tag \"{name}\"")));
                }
                stack.push(name.to_owned());
            }
            rest = &rest[end + 1..];
        } else if c == '&' {
            let end = rest
                .find(';')
                .filter(|&e| e <= 8)
                .ok_or_else(|| bad("unescaped &"))?;
            out.push(match &rest[..=end] {
                "&lt;" => '<',
                "&gt;" => '>',
                "&amp;" => '&',
                "&quot;" => '"',
                _ => return Err(bad("unknown entity")),
            });
            rest = &rest[end + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !stack.is_empty() {
        return Err(bad("unclosed tag"));
    }
    Ok(out)
}

/// The `chat_id` of a call's params, sent as a number or a string (both are valid).
pub fn chat_of(params: &Value) -> Option<i64> {
    params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Path, headers and body of one request (`content-length` bodies only).
async fn read_request(tcp: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = header(&headers, "content-length")?.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some((path, headers, body))
}

async fn respond(tcp: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        text.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(text.as_bytes()).await?;
    tcp.shutdown().await
}

/// The text fields of a multipart body and its (first) file.
fn multipart(body: &[u8], boundary: &str) -> (Value, Option<File>) {
    let mut fields = serde_json::Map::new();
    let mut file = None;
    let sep = format!("--{boundary}");
    let sep = sep.as_bytes();
    let mut parts = Vec::new();
    let mut at = 0;
    while let Some(i) = find(&body[at..], sep) {
        parts.push(at + i + sep.len());
        at += i + sep.len();
    }
    for w in parts.windows(2) {
        let part = &body[w[0]..w[1] - sep.len()];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(h) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..h]).into_owned();
        let data = &part[h + 4..];
        let name = attr(&head, "name").unwrap_or_default();
        match attr(&head, "filename") {
            Some(filename) => {
                let ct = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Type:")
                            .or(l.strip_prefix("content-type:"))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                file = Some((name, filename, ct, data.to_vec()));
            }
            None => {
                fields.insert(name, json!(String::from_utf8_lossy(data)));
            }
        }
    }
    (Value::Object(fields), file)
}

fn attr(head: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=\"");
    let i = head.find(&format!("; {pat}")).map(|i| i + 2)?;
    let rest = &head[i + pat.len()..];
    rest.split('"').next().map(str::to_owned)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
