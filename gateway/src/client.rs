//! A small operator client with its own persisted device identity, used by
//! `pincer-gateway call` (and later `devices` / `nodes`) and by scripts.
//!
//! Identity: `<state>/identity/device.json` (Ed25519 seed, 0600). Issued device tokens:
//! `<state>/identity/device-auth.json`. Credentials, in order: an explicit token or password,
//! the stored device token, the gateway token file of a local gateway in the same state dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pincer_protocol::connect::{ChallengePayload, HelloOk};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::Frame;
use pincer_protocol::identity::{DeviceKeyPair, SignedFields};
use pincer_protocol::{base64url, scopes};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::{now_ms, secret, VERSION};
use pincer_os::{ensure_private_dir, write_atomic};

/// Errors of the operator client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("gateway closed the connection ({0})")]
    Closed(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected frame from gateway: {0}")]
    Protocol(String),
    #[error("connect refused: {0}")]
    Refused(ErrorShape),
    #[error("{0}")]
    Method(ErrorShape),
    #[error("identity file {path}: {message}")]
    Identity { path: PathBuf, message: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    device_id: String,
    public_key: String,
    seed: String,
    created_at_ms: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeviceAuthFile {
    version: u32,
    device_id: String,
    tokens: std::collections::BTreeMap<String, StoredToken>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    token: String,
    role: String,
    scopes: Vec<String>,
    updated_at_ms: u64,
}

/// Loads the identity in `state_dir`, creating it on first use.
pub fn load_or_create_identity(state_dir: &Path) -> Result<DeviceKeyPair, ClientError> {
    let path = state_dir.join("identity").join("device.json");
    let err = |m: String| ClientError::Identity {
        path: path.clone(),
        message: m,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f: IdentityFile = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
            let seed = base64url::decode_array::<32>(&f.seed)
                .map_err(|e| err(format!("bad seed: {e:?}")))?;
            Ok(DeviceKeyPair::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = DeviceKeyPair::generate().map_err(|e| err(e.to_string()))?;
            let pk = kp.public_key();
            let f = IdentityFile {
                version: 1,
                device_id: pk.device_id().to_hex().as_str().into(),
                public_key: pk.to_base64url().as_str().into(),
                seed: base64url::encode(&kp.seed()),
                created_at_ms: now_ms(),
            };
            ensure_private_dir(state_dir).map_err(|e| err(e.to_string()))?;
            ensure_private_dir(&state_dir.join("identity")).map_err(|e| err(e.to_string()))?;
            write_atomic(&path, &serde_json::to_vec_pretty(&f).unwrap_or_default())
                .map_err(|e| err(e.to_string()))?;
            Ok(kp)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn auth_path(state_dir: &Path) -> PathBuf {
    state_dir.join("identity").join("device-auth.json")
}

fn stored_token(state_dir: &Path, device_id: &str, role: &str) -> Option<String> {
    let f: DeviceAuthFile =
        serde_json::from_slice(&std::fs::read(auth_path(state_dir)).ok()?).ok()?;
    (f.device_id == device_id)
        .then(|| f.tokens.get(role).map(|t| t.token.clone()))
        .flatten()
}

fn save_token(state_dir: &Path, device_id: &str, role: &str, token: &str, scopes: &[String]) {
    let path = auth_path(state_dir);
    let mut f: DeviceAuthFile = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|f: &DeviceAuthFile| f.device_id == device_id)
        .unwrap_or_else(|| DeviceAuthFile {
            version: 1,
            device_id: device_id.into(),
            ..Default::default()
        });
    f.tokens.insert(
        role.into(),
        StoredToken {
            token: token.into(),
            role: role.into(),
            scopes: scopes.to_vec(),
            updated_at_ms: now_ms(),
        },
    );
    if let Err(e) = write_atomic(&path, &serde_json::to_vec_pretty(&f).unwrap_or_default()) {
        tracing::warn!(error = %e, "could not save device token");
    }
}

/// Options for [`call`].
#[derive(Debug, Clone)]
pub struct CallOptions {
    pub url: String,
    pub token: Option<String>,
    pub password: Option<String>,
    pub state_dir: PathBuf,
    pub timeout: Duration,
    /// Extra HTTP headers on the upgrade request (for testing proxies).
    pub headers: Vec<(String, String)>,
    /// A setup code to present as `auth.bootstrapToken` (instead of a token).
    pub bootstrap_token: Option<String>,
    /// Scopes to ask for (default: all six operator scopes).
    pub scopes: Option<Vec<String>>,
}

impl CallOptions {
    /// Options for `url` with everything else empty or default.
    pub fn new(url: impl Into<String>, state_dir: PathBuf) -> CallOptions {
        CallOptions {
            url: url.into(),
            token: None,
            password: None,
            state_dir,
            timeout: Duration::from_secs(10),
            headers: vec![],
            bootstrap_token: None,
            scopes: None,
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type WsTx = futures_util::stream::SplitSink<Ws, Message>;
type WsRx = futures_util::stream::SplitStream<Ws>;

/// What to do once connected.
enum Action<'a> {
    Call(&'a str, Value),
    /// Print events until the gateway closes the socket; returns the close code and reason.
    Watch(&'a mut (dyn FnMut(&pincer_protocol::frames::EventFrame) + Send)),
}

/// Connects as an operator (all scopes), calls `method` with `params`, returns the payload.
pub async fn call(opts: &CallOptions, method: &str, params: Value) -> Result<Value, ClientError> {
    run(opts, Action::Call(method, params), true).await
}

/// Connects as an operator and hands every event to `on_event` until the gateway closes the
/// socket; returns the close code and reason.
pub async fn watch(
    opts: &CallOptions,
    on_event: &mut (dyn FnMut(&pincer_protocol::frames::EventFrame) + Send),
) -> Result<(u16, String), ClientError> {
    let v = run(opts, Action::Watch(on_event), false).await?;
    Ok((
        v["code"].as_u64().unwrap_or(1006) as u16,
        v["reason"].as_str().unwrap_or("").to_owned(),
    ))
}

async fn run(
    opts: &CallOptions,
    mut action: Action<'_>,
    bounded: bool,
) -> Result<Value, ClientError> {
    let key = load_or_create_identity(&opts.state_dir)?;
    let device_id = key.public_key().device_id().to_hex().as_str().to_owned();
    let mut candidates: Vec<Option<String>> = Vec::new();
    if opts.token.is_some() || opts.password.is_some() || opts.bootstrap_token.is_some() {
        candidates.push(opts.token.clone());
    } else {
        if let Some(t) = stored_token(&opts.state_dir, &device_id, "operator") {
            candidates.push(Some(t));
        }
        if let Ok(t) = std::fs::read_to_string(opts.state_dir.join(crate::config::TOKEN_FILE)) {
            candidates.push(Some(t.trim().to_owned()));
        }
        if candidates.is_empty() {
            candidates.push(None);
        }
    }
    let mut last = None;
    for token in candidates {
        let attempt = call_once(opts, &key, &device_id, token, &mut action);
        let outcome = if bounded {
            match tokio::time::timeout(opts.timeout, attempt).await {
                Err(_) => return Err(ClientError::Timeout(opts.timeout)),
                Ok(o) => o,
            }
        } else {
            attempt.await
        };
        match outcome {
            Err(ClientError::Refused(e)) => last = Some(ClientError::Refused(e)),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Closed("no credentials".into())))
}

async fn next_frame<S>(rx: &mut S) -> Result<Frame, ClientError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => {
                return Frame::decode(t.as_str()).map_err(|e| ClientError::Protocol(e.to_string()))
            }
            Some(Ok(Message::Close(c))) => {
                return Err(ClientError::Closed(
                    c.map(|c| format!("{} {}", u16::from(c.code), c.reason))
                        .unwrap_or_default(),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Closed(e.to_string())),
            None => return Err(ClientError::Closed("eof".into())),
        }
    }
}

async fn open(
    opts: &CallOptions,
    key: &DeviceKeyPair,
    device_id: &str,
    token: Option<String>,
) -> Result<(WsTx, WsRx), ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let connect_err = |m: String| ClientError::Connect {
        url: opts.url.clone(),
        message: m,
    };
    let mut request = opts
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_err(e.to_string()))?;
    for (k, v) in &opts.headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| connect_err(e.to_string()))?;
        let value = v
            .parse()
            .map_err(|_| connect_err(format!("bad header value for {k}")))?;
        request.headers_mut().insert(name, value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let (mut tx, mut rx) = ws.split();
    let nonce = match next_frame(&mut rx).await? {
        Frame::Event(e) if e.event.as_str() == "connect.challenge" => {
            let c: ChallengePayload = serde_json::from_value(e.payload.unwrap_or(Value::Null))
                .map_err(|e| ClientError::Protocol(format!("bad challenge: {e}")))?;
            c.nonce.into_string()
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "expected connect.challenge, got {other:?}"
            )))
        }
    };
    let scopes: Vec<String> = opts
        .scopes
        .clone()
        .unwrap_or_else(|| scopes::ALL_OPERATOR.iter().map(|s| s.to_string()).collect());
    let signed_at = now_ms();
    let pk = key.public_key();
    let fields = SignedFields {
        device_id,
        client_id: "cli",
        client_mode: "cli",
        role: "operator",
        scopes: &scopes,
        signed_at_ms: signed_at,
        token: pincer_protocol::identity::signature_token(
            token.as_deref(),
            None,
            opts.bootstrap_token.as_deref(),
        ),
        nonce: &nonce,
        platform: "linux",
        device_family: "",
    };
    let mut auth = serde_json::Map::new();
    if let Some(t) = &token {
        auth.insert("token".into(), json!(t));
    }
    if let Some(p) = &opts.password {
        auth.insert("password".into(), json!(p));
    }
    if let Some(b) = &opts.bootstrap_token {
        auth.insert("bootstrapToken".into(), json!(b));
    }
    let connect = json!({
        "type": "req", "id": "connect", "method": "connect",
        "params": {
            "minProtocol": 3, "maxProtocol": 4,
            "client": { "id": "cli", "displayName": "pincer-gateway call", "version": VERSION, "platform": "linux", "mode": "cli" },
            "role": "operator", "scopes": scopes, "caps": [],
            "auth": auth,
            "device": {
                "id": device_id, "publicKey": pk.to_base64url().as_str(), "signature": fields.sign_v3(key).as_str(),
                "signedAt": signed_at, "nonce": nonce,
            },
        }
    });
    tx.send(Message::text(connect.to_string()))
        .await
        .map_err(|e| ClientError::Closed(e.to_string()))?;
    loop {
        match next_frame(&mut rx).await? {
            Frame::Res(r) if r.id.as_str() == "connect" => {
                if !r.ok {
                    return Err(ClientError::Refused(
                        r.error
                            .unwrap_or_else(|| ErrorShape::invalid("connect failed")),
                    ));
                }
                let hello: HelloOk = serde_json::from_value(r.payload.unwrap_or(Value::Null))
                    .map_err(|e| ClientError::Protocol(format!("bad hello-ok: {e}")))?;
                if let Some(a) = hello.auth.as_ref() {
                    if let Some(t) = &a.device_token {
                        save_token(&opts.state_dir, device_id, &a.role, t, &a.scopes);
                    }
                }
                break;
            }
            Frame::Event(_) => continue,
            other => return Err(ClientError::Protocol(format!("unexpected {other:?}"))),
        }
    }
    Ok((tx, rx))
}

async fn call_once(
    opts: &CallOptions,
    key: &DeviceKeyPair,
    device_id: &str,
    token: Option<String>,
    action: &mut Action<'_>,
) -> Result<Value, ClientError> {
    let (mut tx, mut rx) = open(opts, key, device_id, token).await?;
    let (method, params) = match action {
        Action::Call(m, p) => (*m, p.clone()),
        Action::Watch(f) => loop {
            match rx.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(Frame::Event(e)) = Frame::decode(t.as_str()) {
                        f(&e);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    let (code, reason) = c
                        .map(|c| (u16::from(c.code), c.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Ok(json!({ "code": code, "reason": reason }));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Closed(e.to_string())),
                None => return Ok(json!({ "code": 1006, "reason": "" })),
            }
        },
    };
    let id = secret::uuid_v4();
    let req = json!({ "type": "req", "id": id, "method": method, "params": params });
    tx.send(Message::text(req.to_string()))
        .await
        .map_err(|e| ClientError::Closed(e.to_string()))?;
    loop {
        match next_frame(&mut rx).await? {
            Frame::Res(r) if r.id.as_str() == id => {
                let _ = tx.send(Message::Close(None)).await;
                return if r.ok {
                    Ok(r.payload.unwrap_or(Value::Null))
                } else {
                    Err(ClientError::Method(
                        r.error
                            .unwrap_or_else(|| ErrorShape::invalid("request failed")),
                    ))
                };
            }
            _ => continue,
        }
    }
}
