//! How the operator CLI reaches a gateway, on [`pincer_client`]: its own device identity in
//! the state dir (`identity/device.json`, `identity/device-auth.json`), the credentials it
//! tries in order, one call or an event stream.
//!
//! Credentials: an explicit token, password or setup code is the only one tried; otherwise
//! the stored device token, then the token file of a local gateway in the same state dir,
//! then none (a paired device on loopback needs none). A refusal moves on to the next one.

use std::path::PathBuf;
use std::time::Duration;

use pincer_client::dial::Dial;
use pincer_client::hello::{self, Credential, Hello};
use pincer_client::identity::{Identity, IdentityFiles};
use pincer_client::session::{Closed, Session};
use pincer_client::ClientError;
use pincer_protocol::frames::EventFrame;
use pincer_protocol::scopes;
use serde_json::Value;

/// Options for [`call`] and [`watch`].
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Gateway URL.
    pub url: String,
    /// Shared token.
    pub token: Option<String>,
    /// Shared password.
    pub password: Option<String>,
    /// Where the identity lives (and a local gateway's token file).
    pub state_dir: PathBuf,
    /// Bound on the whole call (dial, handshake, answer).
    pub timeout: Duration,
    /// Extra HTTP headers on the upgrade request (for testing proxies).
    pub headers: Vec<(String, String)>,
    /// A setup code to present as `auth.bootstrapToken` (instead of a token).
    pub bootstrap_token: Option<String>,
    /// Scopes to ask for (default: all six operator scopes).
    pub scopes: Option<Vec<String>>,
    /// The gateway certificate's SHA-256 to trust (`wss://`), instead of the public roots.
    pub tls_fingerprint: Option<String>,
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
            tls_fingerprint: None,
        }
    }

    fn candidates(&self, id: &Identity) -> Vec<Credential> {
        if let Some(t) = &self.token {
            return vec![Credential::Token(t.clone())];
        }
        if let Some(p) = &self.password {
            return vec![Credential::Password(p.clone())];
        }
        if let Some(b) = &self.bootstrap_token {
            return vec![Credential::Bootstrap(b.clone())];
        }
        let mut c = Vec::new();
        if let Some(t) = id.device_token("operator") {
            c.push(Credential::Token(t));
        }
        if let Ok(t) = std::fs::read_to_string(self.state_dir.join(crate::config::TOKEN_FILE)) {
            c.push(Credential::Token(t.trim().to_owned()));
        }
        if c.is_empty() {
            c.push(Credential::None);
        }
        c
    }

    fn hello(&self) -> Hello {
        let mut h = match &self.scopes {
            Some(s) => Hello::operator("pincer-gateway call", s),
            None => Hello::operator("pincer-gateway call", &scopes::ALL_OPERATOR),
        };
        h.step_timeout = self.timeout;
        h
    }

    fn dial(&self) -> Dial {
        let mut d = Dial::new(self.url.clone());
        d.headers = self.headers.clone();
        d.timeout = self.timeout;
        d.pin = self.tls_fingerprint.clone();
        d
    }
}

/// Connects with the first credential the gateway accepts.
async fn open(opts: &CallOptions) -> Result<Session, ClientError> {
    let id = Identity::load_or_create(IdentityFiles::operator(&opts.state_dir))?;
    let hello = opts.hello();
    let mut last = None;
    for credential in opts.candidates(&id) {
        let ws = pincer_client::dial::dial(&opts.dial()).await?;
        match hello::connect(ws, &hello, Some(&id), &credential).await {
            Ok((ws, _)) => {
                let mut s = Session::new(ws);
                s.timeout = opts.timeout;
                return Ok(s);
            }
            Err(e @ ClientError::Refused(_)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Closed("no credentials".into())))
}

/// Connects as an operator (bounded by `opts.timeout`) and returns the session.
pub async fn session(opts: &CallOptions) -> Result<Session, ClientError> {
    tokio::time::timeout(opts.timeout, open(opts))
        .await
        .unwrap_or(Err(ClientError::Timeout {
            step: "connecting",
            after: opts.timeout,
        }))
}

/// Connects as an operator, calls `method` with `params`, returns the payload. The whole call
/// is bounded by `opts.timeout`.
pub async fn call(opts: &CallOptions, method: &str, params: Value) -> Result<Value, ClientError> {
    let work = async {
        let mut s = open(opts).await?;
        let result = s.request(method, &params).await;
        s.close().await;
        result
    };
    tokio::time::timeout(opts.timeout, work)
        .await
        .unwrap_or(Err(ClientError::Timeout {
            step: "the call",
            after: opts.timeout,
        }))
}

/// Connects as an operator and hands every event to `on_event` until the gateway closes the
/// socket; returns how it closed.
pub async fn watch(
    opts: &CallOptions,
    on_event: &mut (dyn FnMut(&EventFrame) + Send),
) -> Result<Closed, ClientError> {
    let mut s = tokio::time::timeout(opts.timeout, open(opts))
        .await
        .unwrap_or(Err(ClientError::Timeout {
            step: "connecting",
            after: opts.timeout,
        }))?;
    loop {
        match s.next_event().await {
            Ok(e) => on_event(&e),
            Err(closed) => return Ok(closed),
        }
    }
}
