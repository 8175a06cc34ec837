//! A small gateway written in the test, over a real socket, for running pincer-node (the
//! real binary, as a process) against: the challenge, the node's `connect`, `hello-ok`,
//! invokes and their results. Used by `mock_gateway.rs` and the abuse suite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The debug build of the node under test.
pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_pincer-node");
/// The shared token the tests hand the node.
pub const TOKEN: &str = "mock-shared-token";
/// Every wait of the mock is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<TcpStream>;

pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pincer-node-mock-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

pub struct NodeProc {
    pub child: Child,
    pub log: PathBuf,
}

impl NodeProc {
    pub fn spawn(args: &[&str], state: &Path, log: PathBuf) -> NodeProc {
        NodeProc::spawn_command(Command::new(NODE_BIN), args, state, log)
    }

    /// Same, with `command` as the node (the release build, or one started in a cgroup).
    pub fn spawn_command(
        mut command: Command,
        args: &[&str],
        state: &Path,
        log: PathBuf,
    ) -> NodeProc {
        let child = command
            .arg("run")
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "info")
            .env_remove("PINCER_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("PINCER_STATE_DIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn pincer-node");
        NodeProc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One accepted connection, after the challenge and the node's `connect`.
pub struct Conn {
    pub ws: Ws,
    /// When the TCP connection was accepted.
    pub at: Instant,
    pub nonce: String,
    /// The whole `connect` request frame.
    pub frame: Value,
}

impl Conn {
    pub fn params(&self) -> &Value {
        &self.frame["params"]
    }

    pub async fn send(&mut self, v: Value) {
        tokio::time::timeout(STEP, self.ws.send(Message::text(v.to_string())))
            .await
            .expect("send in time")
            .expect("send");
    }

    pub async fn event(&mut self, event: &str, payload: Value) {
        self.send(json!({ "type": "event", "event": event, "payload": payload }))
            .await;
    }

    pub async fn hello(&mut self, tick_ms: u64, device_token: Option<&str>) {
        self.hello_with(tick_ms, device_token, 1 << 20).await;
    }

    /// [`Conn::hello`] advertising `max_payload` (what the node may send in one frame).
    pub async fn hello_with(
        &mut self,
        tick_ms: u64,
        device_token: Option<&str>,
        max_payload: usize,
    ) {
        let id = self.frame["id"].clone();
        let mut auth = json!({ "role": "node", "scopes": [], "issuedAtMs": 1 });
        if let Some(t) = device_token {
            auth["deviceToken"] = json!(t);
        }
        self.send(json!({ "type": "res", "id": id, "ok": true, "payload": {
            "type": "hello-ok", "protocol": 3,
            "server": { "version": "mock", "connId": "mock-conn" },
            "features": { "methods": ["node.invoke.result", "node.event"], "events": ["node.invoke.request"] },
            "snapshot": { "presence": [], "health": {}, "stateVersion": { "presence": 0, "health": 0 }, "uptimeMs": 1 },
            "auth": auth,
            "policy": { "maxPayload": max_payload, "maxBufferedBytes": 1 << 22, "tickIntervalMs": tick_ms },
        }}))
        .await;
    }

    /// The next text frame from the node as JSON (`None` when the socket ended or it closed).
    pub async fn next(&mut self, within: Duration) -> Result<Value, Option<CloseFrame>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("nothing from the node within {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Err(None),
                Ok(Some(Ok(Message::Close(c)))) => return Err(c),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("node sends JSON"))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Collects `node.invoke.result` params for `ids` (in any order), answering each with a
    /// `res` — `ok:true`, or an error for the ids in `refuse` (which must not upset the node).
    pub async fn results(&mut self, ids: &[&str], refuse: &[&str]) -> HashMap<String, Value> {
        let mut got = HashMap::new();
        while got.len() < ids.len() {
            let f = self.next(STEP).await.expect("a result, not a close");
            assert_eq!(
                (f["type"].as_str(), f["method"].as_str()),
                (Some("req"), Some("node.invoke.result")),
                "{f}"
            );
            let p = f["params"].clone();
            let id = p["id"].as_str().expect("invoke id").to_owned();
            assert!(ids.contains(&id.as_str()), "unexpected result {p}");
            assert!(got.insert(id.clone(), p).is_none(), "two results for {id}");
            let res = if refuse.contains(&id.as_str()) {
                json!({ "type": "res", "id": f["id"], "ok": false, "error": { "code": "INVALID_REQUEST", "message": "nodeId mismatch" } })
            } else {
                json!({ "type": "res", "id": f["id"], "ok": true, "payload": { "ok": true } })
            };
            self.send(res).await;
        }
        got
    }

    pub async fn invoke(&mut self, payload: Value) -> Value {
        let id = payload["id"].as_str().expect("id").to_owned();
        self.event("node.invoke.request", payload).await;
        self.results(&[&id], &[]).await.remove(&id).expect("result")
    }
}

pub struct MockGateway {
    pub listener: TcpListener,
    pub url: String,
}

impl MockGateway {
    pub async fn bind() -> MockGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        MockGateway {
            listener,
            url: format!("ws://127.0.0.1:{port}"),
        }
    }

    /// Accepts the node's next connection: challenge (with the extra `capabilities` field the
    /// real gateway sends), then its `connect`.
    pub async fn accept(&self) -> Conn {
        self.accept_within(STEP)
            .await
            .expect("the node connects in time")
    }

    /// [`MockGateway::accept`], waiting up to `within` for the node to dial; `None` if it
    /// does not.
    pub async fn accept_within(&self, within: Duration) -> Option<Conn> {
        let (tcp, _) = tokio::time::timeout(within, self.listener.accept())
            .await
            .ok()?
            .expect("accept");
        let at = Instant::now();
        let ws = tokio::time::timeout(STEP, tokio_tungstenite::accept_async(tcp))
            .await
            .expect("upgrade in time")
            .expect("upgrade");
        let nonce = format!(
            "{:08x}-0000-4000-8000-000000000000",
            at.elapsed().as_nanos()
        );
        let mut conn = Conn {
            ws,
            at,
            nonce: nonce.clone(),
            frame: Value::Null,
        };
        conn.event(
            "connect.challenge",
            json!({ "nonce": nonce, "ts": 1, "capabilities": ["model-catalog-snapshot"] }),
        )
        .await;
        conn.frame = conn.next(STEP).await.expect("connect, not a close");
        assert_eq!(
            (conn.frame["type"].as_str(), conn.frame["method"].as_str()),
            (Some("req"), Some("connect")),
            "{}",
            conn.frame
        );
        Some(conn)
    }
}
