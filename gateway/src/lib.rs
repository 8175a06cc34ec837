//! # pincer-gateway
//!
//! One long-lived daemon per host: the OpenClaw-compatible WebSocket control plane that
//! operator clients and nodes connect to.
//!
//! **Owns:** sockets, the handshake and its auth decisions, the connection registry, event
//! fan-out, method dispatch, and the gateway's persisted state (token, paired devices).
//! **Must not touch:** the meaning of bytes on the wire (that is `pincer-protocol`), or any
//! hardware (that is `pincer-hal`, used by nodes only).
//!
//! ## Where a frame goes
//!
//! ```text
//! TCP ─▶ listeners (accept, pre-auth budget) ─▶ link (one task per socket)
//!          link: tls (handshake, with [tls] on) ─▶ http (request head) ─▶ a page (http::pages), or on an upgrade:
//!          link: upgrade ─▶ challenge ─▶ admit (handshake decision, register) ─▶ hello-ok
//!          link: reader ─▶ methods (scope check, dedupe) ─▶ reply into the Outbox
//!          link: writer ◀─ Outbox (bounded in frames and bytes) ◀─ hub broadcast, replies
//! ```
//!
//! * [`config`]: settings from flags, environment and `gateway.toml`.
//! * [`server`]: binding, tick timer, presence flusher, graceful shutdown; [`listeners`]: the
//!   listening sockets (the port, loopback beside a single address, the watched tailnet
//!   address, the Serve listener) and their accept loops.
//! * [`tailscale`]: the local daemon's LocalAPI (status, whois), the Serve route, and the
//!   sign-in by Serve's identity headers.
//! * [`tls`]: `[tls]`: the certificate (named PEM files, or a self-signed pair generated once
//!   into the state dir), its SHA-256 pin, the acceptor, and the plain-or-TLS socket type.
//! * [`http`]: the HTTP side of the port: request heads, pages (the embedded WebChat, a
//!   Control UI bundle from disk, `/control-ui-config.json`), then the WebSocket upgrade.
//! * [`upgrade`]: the WebSocket upgrade with capped reads and peer facts; [`limits`]: the pre-auth
//!   budget and the auth lockout.
//! * [`link`]: one connection's life: challenge, first frame, reader ∥ writer, close.
//! * [`admit`]: lockout → [`handshake`] (protocol range, secret, device proof, pairing) →
//!   durable trust change → register → `hello-ok`; [`auth`]: constant-time secret checks.
//! * [`control_ui`]: what the official Control UI reads on load that is the gateway's
//!   (session subscriptions, empty approval and question lists); [`host_info`]: its Systems
//!   view (`system.info`, `environments.list`).
//! * [`conn`]: a connection's handle (role, scopes, outbox, seq, close request).
//! * [`hub`]: connection registry and broadcast; [`presence`], [`health`] and system events.
//! * [`methods`]: method dispatch, scope enforcement, idempotency ([`dedupe`]); [`pairing`]:
//!   operator methods over the trust store.
//! * [`channel_methods`]: `channels.status` and the channels' DM pairing methods (the
//!   channels themselves are `pincer-channels`, set up with the agent in [`agent_host`]).
//! * [`devices`]: paired devices, hashed tokens, pending requests, setup codes and node
//!   approvals, persisted atomically by one writer thread.
//! * [`nodes`]: command policy, a node's session and admission, invoke routing.
//! * [`operator`]: the operator CLI (`pincer-gateway call|devices|nodes|events`): its commands,
//!   its calls on `pincer-client`, its typed rendering.
//! * [`secret`]: random tokens and ids (crash-safe files come from `pincer-os`).

#![warn(missing_docs)]

pub mod admit;
pub mod agent_host;
pub mod agent_methods;
pub mod auth;
pub mod channel_methods;
pub mod config;
pub mod conn;
pub mod control_ui;
pub mod dedupe;
pub mod devices;
pub mod handshake;
pub mod health;
pub mod host_info;
pub mod http;
pub mod hub;
pub mod limits;
pub mod link;
pub mod listeners;
pub mod methods;
pub mod nodes;
pub mod operator;
pub mod pairing;
pub mod presence;
pub mod reply;
pub mod secret;
pub mod server;
pub mod tailscale;
pub mod tls;
pub mod upgrade;

pub use config::Config;
pub use server::{Gateway, GatewayError};

/// Version reported in `hello-ok.server.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Name reported alongside the version.
pub const IMPLEMENTATION: &str = "pincer-gateway";

/// Milliseconds since the Unix epoch.
pub use pincer_os::now_ms;
