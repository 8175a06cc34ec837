//! The client side of the handshake: read `connect.challenge`, send `connect` built from the
//! typed [`ConnectParams`] and signed with the device key over the challenge's nonce (the v3
//! payload, §2.4 of the reference), read `hello-ok`, and keep the device token it issues.
//!
//! Each of the two waits is bounded by [`Hello::step_timeout`]. A refusal is returned as
//! [`ClientError::Refused`] with the gateway's error (its `details.code` says why: pairing
//! required, bad token, …) after answering the gateway's close.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pincer_protocol::connect::{
    ChallengePayload, ClientId, ClientInfo, ClientMode, ConnectAuth, ConnectParams, DeviceProof,
    HelloOk,
};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::{encode_req, Frame};
use pincer_protocol::identity::{signature_token, SignedFields};
use pincer_protocol::text::{NonEmpty, Version};
use pincer_protocol::version::{MAX_PROTOCOL, MIN_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::identity::Identity;
use crate::{ClientError, Ws};

/// The shared secret or code a client presents (the device proof is always sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: a paired device on loopback, or a gateway without auth.
    None,
    /// `auth.token`: the gateway's shared token, or a device token issued earlier.
    Token(String),
    /// `auth.password`.
    Password(String),
    /// `auth.bootstrapToken`: a one-time setup code.
    Bootstrap(String),
}

impl Credential {
    fn auth(&self) -> ConnectAuth {
        let mut a = ConnectAuth::default();
        match self {
            Credential::None => {}
            Credential::Token(t) => a.token = Some(t.clone()),
            Credential::Password(p) => a.password = Some(p.clone()),
            Credential::Bootstrap(b) => a.bootstrap_token = Some(b.clone()),
        }
        a
    }

    fn signed_token(&self) -> &str {
        match self {
            Credential::Token(t) => signature_token(Some(t), None, None),
            Credential::Bootstrap(b) => signature_token(None, None, Some(b)),
            Credential::None | Credential::Password(_) => "",
        }
    }
}

/// What a client says about itself in `connect`.
#[derive(Debug, Clone)]
pub struct Hello {
    /// `client`: id, mode, version, platform, names.
    pub client: ClientInfo,
    /// `role`: `operator` or `node`.
    pub role: String,
    /// `scopes` asked for.
    pub scopes: Vec<String>,
    /// `caps` (a node's capability classes; empty for operators).
    pub caps: Vec<String>,
    /// `commands` a node offers (`None` for operators).
    pub commands: Option<Vec<String>>,
    /// `pathEnv` a node reports.
    pub path_env: Option<String>,
    /// Bound on each wait: for the challenge, then for the answer to `connect`.
    pub step_timeout: Duration,
}

impl Hello {
    /// An operator client (`client.id` `cli`, mode `cli`) asking for `scopes`.
    pub fn operator<S: AsRef<str>>(display_name: &str, scopes: &[S]) -> Hello {
        Hello {
            client: client_info(ClientId::Cli, ClientMode::Cli, display_name),
            role: "operator".into(),
            scopes: scopes.iter().map(|s| s.as_ref().to_owned()).collect(),
            caps: Vec::new(),
            commands: None,
            path_env: None,
            step_timeout: Duration::from_secs(10),
        }
    }

    /// A node (`client.id` `node-host`, mode `node`) offering `caps` and `commands`.
    pub fn node(display_name: &str, caps: Vec<String>, commands: Vec<String>) -> Hello {
        Hello {
            client: client_info(ClientId::NodeHost, ClientMode::Node, display_name),
            role: "node".into(),
            scopes: Vec::new(),
            caps,
            commands: Some(commands),
            path_env: None,
            step_timeout: Duration::from_secs(10),
        }
    }

    /// The `connect` params for `nonce`, with a device proof signed by `id`'s key when given
    /// (without one the gateway grants what the shared secret alone allows).
    pub fn params(
        &self,
        id: Option<&Identity>,
        nonce: &str,
        credential: &Credential,
    ) -> ConnectParams {
        ConnectParams {
            min_protocol: Version(MIN_PROTOCOL),
            max_protocol: Version(MAX_PROTOCOL),
            client: self.client.clone(),
            caps: Some(self.caps.clone()),
            commands: self.commands.clone(),
            permissions: None,
            path_env: self.path_env.clone(),
            computer_use: None,
            worker_runs: None,
            model_catalog: None,
            role: NonEmpty::new(self.role.clone()),
            scopes: Some(self.scopes.clone()),
            device: id.map(|id| self.proof(id, nonce, credential)),
            auth: Some(credential.auth()),
            locale: None,
            user_agent: None,
        }
    }

    fn proof(&self, id: &Identity, nonce: &str, credential: &Credential) -> DeviceProof {
        let signed_at = pincer_os::now_ms();
        let fields = SignedFields {
            device_id: &id.device_id,
            client_id: self.client.id.as_str(),
            client_mode: self.client.mode.as_str(),
            role: &self.role,
            scopes: &self.scopes,
            signed_at_ms: signed_at,
            token: credential.signed_token(),
            nonce,
            platform: self.client.platform.as_str(),
            device_family: self.client.device_family.as_deref().unwrap_or(""),
        };
        DeviceProof {
            id: NonEmpty::from(id.device_id.as_str()),
            public_key: NonEmpty::from(id.public_key.as_str()),
            signature: NonEmpty::from(fields.sign_v3(&id.key).as_str()),
            signed_at,
            nonce: NonEmpty::from(nonce),
        }
    }
}

fn client_info(id: ClientId, mode: ClientMode, display_name: &str) -> ClientInfo {
    ClientInfo {
        id,
        display_name: NonEmpty::new(display_name),
        version: NonEmpty::from(crate::VERSION),
        build_id: None,
        platform: NonEmpty::from("linux"),
        device_family: None,
        model_identifier: None,
        time_zone: None,
        mode,
        instance_id: None,
    }
}

/// Runs the handshake on a fresh socket: returns it with the `hello-ok`, after saving the
/// device token the gateway issued (a failure to save is logged: the connection is good, the
/// next one pairs again). Without an identity no device proof is sent (a token-only client,
/// like the reference's backend helper or the bench's thousands of sockets).
pub async fn connect(
    mut ws: Ws,
    hello: &Hello,
    id: Option<&Identity>,
    credential: &Credential,
) -> Result<(Ws, HelloOk), ClientError> {
    let nonce = match challenge(&mut ws, hello.step_timeout).await {
        Ok(n) => n,
        Err(e) => {
            if matches!(e, ClientError::Protocol(_)) {
                let _ = close_within(&mut ws, 1008, "bad connect challenge").await;
            }
            return Err(e);
        }
    };
    let params = hello.params(id, &nonce, credential);
    let text = encode_req("connect", "connect", &params)
        .map_err(|e| ClientError::Protocol(format!("cannot encode connect: {e}")))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| ClientError::Closed(e.to_string()))?;
    loop {
        match next_frame(
            &mut ws,
            hello.step_timeout,
            "waiting for hello-ok",
            MAX_VALUES_BEFORE_HELLO,
        )
        .await?
        {
            Frame::Res(r) if r.id.as_str() == "connect" => {
                if !r.ok {
                    // Answer the gateway's close instead of dropping the socket.
                    let _ = close_within(&mut ws, 1000, "").await;
                    return Err(ClientError::Refused(
                        r.error
                            .unwrap_or_else(|| ErrorShape::invalid("connect refused")),
                    ));
                }
                let hello_ok: HelloOk =
                    serde_json::from_value(r.payload.unwrap_or(serde_json::Value::Null))
                        .map_err(|e| ClientError::Protocol(format!("bad hello-ok: {e}")))?;
                if let (Some(id), Some(auth)) = (id, &hello_ok.auth) {
                    if let Some(token) = &auth.device_token {
                        if let Err(e) = id.save_device_token(&auth.role, token, &auth.scopes) {
                            tracing::error!(error = %e, "could not save the device token");
                        }
                    }
                }
                return Ok((ws, hello_ok));
            }
            _ => continue,
        }
    }
}

/// Reads frames until `connect.challenge` and returns its (trimmed) nonce; a challenge
/// without one is a [`ClientError::Protocol`].
pub async fn challenge(ws: &mut Ws, within: Duration) -> Result<String, ClientError> {
    loop {
        if let Frame::Event(e) = next_frame(
            ws,
            within,
            "waiting for connect.challenge",
            MAX_VALUES_BEFORE_HELLO,
        )
        .await?
        {
            if e.event.as_str() != "connect.challenge" {
                continue;
            }
            let c: ChallengePayload =
                serde_json::from_value(e.payload.unwrap_or(serde_json::Value::Null))
                    .map_err(|e| ClientError::Protocol(format!("bad connect.challenge: {e}")))?;
            let nonce = c.nonce.as_str().trim();
            if nonce.is_empty() {
                return Err(ClientError::Protocol("challenge without a nonce".into()));
            }
            // The nonce goes back in `connect` and into the signed payload: a gateway's is a
            // UUID; a megabyte one is not signed and sent back.
            if nonce.len() > MAX_NONCE {
                return Err(ClientError::Protocol(format!(
                    "challenge nonce of {} bytes (at most {MAX_NONCE})",
                    nonce.len()
                )));
            }
            return Ok(nonce.to_owned());
        }
    }
}

/// Longest challenge nonce signed and sent back (the reference's is a 36-character UUID).
pub const MAX_NONCE: usize = 256;

/// The most JSON values a frame may hold before `hello-ok` (a challenge and a `hello-ok` with a
/// snapshot of 200 presence entries hold a few thousand): more and it is not decoded, the
/// handshake fails. A tree of 65,536 values is a few MB; 20 MB of `[0,0,…]` would be ~400 MB.
pub const MAX_VALUES_BEFORE_HELLO: usize = 65_536;

/// The next frame that decodes (others are logged and skipped), within `within`. A frame of
/// more than `max_values` JSON values is not decoded: [`ClientError::Protocol`].
pub(crate) async fn next_frame(
    ws: &mut Ws,
    within: Duration,
    step: &'static str,
    max_values: usize,
) -> Result<Frame, ClientError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ClientError::Timeout {
                step,
                after: within,
            })?;
        match msg {
            None => return Err(ClientError::Closed("connection closed".into())),
            Some(Err(e)) => return Err(ClientError::Closed(e.to_string())),
            Some(Ok(Message::Close(c))) => {
                return Err(ClientError::Closed(
                    c.map(|c| format!("{} {}", u16::from(c.code), c.reason))
                        .unwrap_or_else(|| "no close code".into()),
                ))
            }
            Some(Ok(Message::Text(t)))
                if pincer_protocol::weight::json_values(t.as_str(), max_values + 1)
                    > max_values =>
            {
                return Err(ClientError::Protocol(format!(
                    "a frame of {} bytes and more than {max_values} JSON values ({step}): not decoded",
                    t.len()
                )));
            }
            Some(Ok(Message::Text(t))) => match Frame::decode(t.as_str()) {
                Ok(f) => return Ok(f),
                Err(e) => tracing::debug!(error = %e, "ignoring a frame that does not decode"),
            },
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends a close frame with `code` and `reason`, waiting at most a second.
pub(crate) async fn close_within(ws: &mut Ws, code: u16, reason: &str) -> Result<(), ClientError> {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    match tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ClientError::Closed(e.to_string())),
        Err(_) => Err(ClientError::Timeout {
            step: "closing",
            after: Duration::from_secs(1),
        }),
    }
}
