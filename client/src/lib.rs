//! # pincer-client
//!
//! The one client path to an OpenClaw gateway, used by every Pincer client: the operator CLI
//! (`pincer-gateway call|devices|nodes|events`), `pincer-node`, `pincer-bench` and the tests.
//!
//! **Owns:** dialling `ws://` and `wss://` (the Mozilla roots, or exactly one certificate by its
//! SHA-256 pin) with a frame cap ([`dial`]); the handshake — read `connect.challenge`, build
//! `connect` from the typed [`ConnectParams`](pincer_protocol::connect::ConnectParams) and the
//! protocol range, sign it with the device key, read `hello-ok` and keep the device token it
//! issues ([`hello`]); the device identity and its tokens on disk, written atomically
//! ([`identity`]); one request/response correlation and event stream for simple clients
//! ([`session`]).
//!
//! **Must not touch:** what a client does once connected (the node's reader/writer loops and
//! commands stay in `pincer-node`; the CLI's rendering in `pincer-gateway`), the gateway's
//! server side, hardware.
//!
//! A typical operator call:
//!
//! ```no_run
//! # async fn demo() -> Result<(), pincer_client::ClientError> {
//! use pincer_client::{dial, hello, identity, session::Session};
//! let id = identity::Identity::load_or_create(identity::IdentityFiles::operator("/tmp/state".as_ref()))?;
//! let ws = dial::dial(&dial::Dial::new("ws://127.0.0.1:18789")).await?;
//! let hello = hello::Hello::operator("cli", &pincer_protocol::scopes::ALL_OPERATOR);
//! let (ws, _hello_ok) = hello::connect(ws, &hello, Some(&id), &hello::Credential::Token("t".into())).await?;
//! let mut s = Session::new(ws);
//! let health = s.request("health", &serde_json::json!({})).await?;
//! # let _ = health; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod dial;
mod error;
pub mod hello;
pub mod identity;
pub mod pin;
pub mod session;
#[cfg(feature = "tls")]
mod tls;

pub use error::ClientError;

/// The socket to a gateway, plain or TLS.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Version reported in `client.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
