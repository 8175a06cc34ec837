//! Test support: the real gateway binary on a free port, and a raw WebSocket client that speaks
//! the protocol frame by frame (so tests can send what real clients would never send).
#![allow(dead_code)]

#[path = "../../../tests/support/memcg.rs"]
pub mod memcg;
pub mod netns;
pub mod node_bin;
pub mod openclaw;

/// Held by tests that start many real processes (Node.js programs, tailnets): one at a time
/// rather than competing for a small machine's cores against their own deadlines. A failed
/// test poisons the lock; the next one still runs.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pincer_protocol::identity::{DeviceKeyPair, PayloadVersion, SignedFields};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_pincer-gateway");
pub const TOKEN: &str = "wire-test-token";

/// The gateway binary running on a free loopback port; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    /// The URL its listening line named (`ws://ADDR:PORT`, `wss://` with `[tls]`).
    pub listening: String,
    pub dir: PathBuf,
    owns_dir: bool,
}

impl Gateway {
    /// `pincer-gateway run --port 0 --token TOKEN --state-dir <fresh> EXTRA...`
    pub fn start(extra: &[&str]) -> Gateway {
        Gateway::start_with_token(TOKEN, extra)
    }

    /// Same, with another shared token.
    pub fn start_with_token(token: &str, extra: &[&str]) -> Gateway {
        let dir =
            std::env::temp_dir().join(format!("pincer-wire-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut gw = Gateway::start_in(&dir, token, extra);
        gw.owns_dir = true;
        gw
    }

    /// Runs with its state in `dir` (kept on drop, so a test can restart on the same state).
    pub fn start_in(dir: &std::path::Path, token: &str, extra: &[&str]) -> Gateway {
        Gateway::start_command(Command::new(BIN), dir, token, extra)
    }

    /// Same, with `command` as the gateway (another build, or one started inside a cgroup):
    /// the arguments are added to it.
    pub fn start_command(
        mut command: Command,
        dir: &std::path::Path,
        token: &str,
        extra: &[&str],
    ) -> Gateway {
        let mut child = command
            .args(["run", "--port", "0", "--token", token, "--state-dir"])
            .arg(dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("PINCER_GATEWAY_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            // PINCER_GATEWAY_LOG=debug shows the gateway's log in the test's output.
            .stderr(if std::env::var_os("PINCER_GATEWAY_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("spawn gateway");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        Gateway {
            child,
            port,
            listening: line
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned(),
            dir: dir.to_path_buf(),
            owns_dir: false,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub async fn open(&self) -> Client {
        Client::open(&self.url()).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn now_ms() -> u64 {
    pincer_gateway::now_ms()
}

/// What the socket did next.
#[derive(Debug)]
pub enum Next {
    Frame(Value),
    Closed(u16, String),
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn open(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        Client { ws }
    }

    /// Opens `url` with extra request headers on the upgrade (a proxy's, say).
    pub async fn open_with_headers(url: &str, headers: &[(&str, &str)]) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                v.parse().expect("header value"),
            );
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        Client { ws }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let _ = self.ws.send(Message::text(text.into())).await;
    }

    pub async fn send(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    /// The next frame or close, within `secs`.
    pub async fn next_within(&mut self, secs: f64) -> Option<Next> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Next::Closed(1006, String::new())),
                Ok(Some(Err(_))) => return Some(Next::Closed(1006, String::new())),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(Next::Frame(
                        serde_json::from_str(t.as_str()).expect("server sent JSON"),
                    ))
                }
                Ok(Some(Ok(Message::Close(c)))) => {
                    return Some(c.map_or(Next::Closed(1005, String::new()), |c| {
                        Next::Closed(u16::from(c.code), c.reason.to_string())
                    }))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame; panics on close or after 5 s.
    pub async fn recv(&mut self) -> Value {
        match self.next_within(5.0).await {
            Some(Next::Frame(v)) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Skips events until the `res` with `id`.
    pub async fn response(&mut self, id: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == "res" && v["id"] == id {
                return v;
            }
        }
    }

    /// Skips frames until the socket closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next_within(5.0).await {
                Some(Next::Closed(c, r)) => return (c, r),
                Some(Next::Frame(_)) => continue,
                None => panic!("socket not closed within 5 s"),
            }
        }
    }

    /// Reads `connect.challenge` and returns its nonce.
    pub async fn challenge(&mut self) -> String {
        let v = self.recv().await;
        assert_eq!(v["event"], "connect.challenge", "first frame: {v}");
        v["payload"]["nonce"].as_str().expect("nonce").to_owned()
    }

    /// Sends `connect` with `params` and returns the response.
    pub async fn connect(&mut self, params: Value) -> Value {
        self.send(&json!({ "type": "req", "id": "c1", "method": "connect", "params": params }))
            .await;
        self.response("c1").await
    }

    /// Sends a request and returns its response.
    pub async fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.send(&json!({ "type": "req", "id": id, "method": method, "params": params }))
            .await;
        self.response(id).await
    }

    /// Waits for an event named `name` (within `secs`).
    pub async fn event(&mut self, name: &str, secs: f64) -> Option<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
        while std::time::Instant::now() < deadline {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_secs_f64();
            match self.next_within(left).await {
                Some(Next::Frame(v)) if v["type"] == "event" && v["event"] == name => {
                    return Some(v)
                }
                Some(Next::Frame(_)) => continue,
                _ => return None,
            }
        }
        None
    }
}

/// A node (raw frames) named `name`, admitted on loopback, that declares `caps` and
/// `commands`; its node id.
pub async fn node_client(
    gw: &Gateway,
    name: &str,
    caps: &[&str],
    commands: &[&str],
) -> (Client, String) {
    let key = new_key();
    let node_id = key.public_key().device_id().to_hex().to_string();
    let mut node = gw.open().await;
    let nonce = node.challenge().await;
    let mut params = Connect {
        key: Some(key),
        role: "node",
        client_id: "node-host",
        mode: "node",
        ..Default::default()
    }
    .params(&nonce);
    params["client"]["displayName"] = json!(name);
    params["caps"] = json!(caps);
    params["commands"] = json!(commands);
    let hello = node.connect(params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    (node, node_id)
}

/// A `connect` request under construction.
pub struct Connect {
    pub min: u32,
    pub max: u32,
    pub client_id: &'static str,
    pub mode: &'static str,
    pub role: &'static str,
    pub scopes: Vec<&'static str>,
    pub token: Option<String>,
    pub instance_id: Option<String>,
    pub key: Option<DeviceKeyPair>,
    pub signed_at: Option<u64>,
    pub payload_version: PayloadVersion,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            min: 3,
            max: 4,
            client_id: "test",
            mode: "test",
            role: "operator",
            scopes: vec![],
            token: Some(TOKEN.into()),
            instance_id: None,
            key: None,
            signed_at: None,
            payload_version: PayloadVersion::V3,
        }
    }
}

pub fn new_key() -> DeviceKeyPair {
    DeviceKeyPair::generate().expect("key")
}

impl Connect {
    /// Params for `nonce`; signs with `key` when one is set.
    pub fn params(&self, nonce: &str) -> Value {
        let mut p = json!({
            "minProtocol": self.min, "maxProtocol": self.max,
            "client": { "id": self.client_id, "version": "0.0.1-test", "platform": "linux", "mode": self.mode },
            "role": self.role, "scopes": self.scopes,
        });
        if let Some(i) = &self.instance_id {
            p["client"]["instanceId"] = json!(i);
        }
        if let Some(t) = &self.token {
            p["auth"] = json!({ "token": t });
        }
        if let Some(key) = &self.key {
            let id = key.public_key().device_id().to_hex();
            let signed_at = self.signed_at.unwrap_or_else(now_ms);
            let fields = SignedFields {
                device_id: id.as_str(),
                client_id: self.client_id,
                client_mode: self.mode,
                role: self.role,
                scopes: &self.scopes,
                signed_at_ms: signed_at,
                token: self.token.as_deref().unwrap_or(""),
                nonce,
                platform: "linux",
                device_family: "",
            };
            let payload = fields.payload(self.payload_version);
            p["device"] = json!({
                "id": id.as_str(),
                "publicKey": key.public_key().to_base64url().as_str(),
                "signature": key.sign_base64url(payload.as_bytes()).as_str(),
                "signedAt": signed_at,
                "nonce": nonce,
            });
        }
        p
    }

    /// Opens a socket, answers the challenge, returns the client and the `connect` response.
    pub async fn run(&self, gw: &Gateway) -> (Client, Value) {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        let res = c.connect(self.params(&nonce)).await;
        (c, res)
    }
}

/// A 320×240 JPEG of four colour bars, made by the HAL's encoder (the one `camera.snap` uses).
pub fn bars_jpeg() -> Vec<u8> {
    let (w, h) = (320u32, 240u32);
    let colours = [[192u8, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0]];
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for _ in 0..h {
        for x in 0..w {
            data.extend_from_slice(&colours[(x * 4 / w) as usize]);
        }
    }
    pincer_hal::image::Rgb {
        width: w,
        height: h,
        data,
    }
    .to_jpeg(85)
    .expect("jpeg")
}

/// A node (raw frames, real wire format) that declares `camera.snap` and answers every invoke
/// with `jpeg`; returns its node id. It stays connected until the test ends.
pub async fn camera_node(gw: &Gateway, jpeg: Vec<u8>) -> String {
    let (mut node, node_id) = node_client(
        gw,
        "kitchen-pi",
        &["camera"],
        &["camera.list", "camera.snap"],
    )
    .await;
    let id = node_id.clone();
    let b64 = pincer_protocol::base64url::encode_standard(&jpeg);
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(Next::Frame(f)) = node.next_within(3600.0).await {
            if f["event"] != "node.invoke.request" {
                continue;
            }
            n += 1;
            let p = &f["payload"];
            let payload = json!({ "format": "jpg", "base64": b64, "width": 320, "height": 240 });
            node.send(&json!({ "type": "req", "id": format!("r{n}"), "method": "node.invoke.result",
                "params": { "id": p["id"], "nodeId": id, "ok": true, "payloadJSON": payload.to_string() } }))
                .await;
        }
    });
    node_id
}
