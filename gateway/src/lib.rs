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
//! TCP ─▶ server (accept, pre-auth budget, upgrade) ─▶ link (one task per socket)
//!          link: challenge ─▶ handshake (auth, device proof, pairing) ─▶ hello-ok
//!          link: req ─▶ methods (scope check, dedupe) ─▶ res
//! hub (registry, presence, health, seq) ─▶ outbound queue of each link ─▶ event frames
//! ```
//!
//! * [`config`]: settings from flags, environment and `gateway.toml`.
//! * [`server`]: accept loop, per-IP pre-auth budget, tick timer, graceful shutdown.
//! * [`link`]: one connection's life: challenge, handshake, read/write loop, bounded queue.
//! * [`handshake`]: the `connect` pipeline (protocol range, shared secret, device proof, pairing).
//! * [`auth`]: shared token / password checks in constant time.
//! * [`devices`]: paired devices and their (hashed) device tokens, persisted atomically.
//! * [`hub`]: connection registry, event broadcast with per-connection `seq`, presence, health.
//! * [`methods`]: method dispatch, scope enforcement, idempotency ([`dedupe`]).
//! * [`nodes`]: node registry, command policy, invoke round trip; [`pairing`]: operator
//!   methods over the trust store.
//! * [`operator`]: the operator CLI (`pincer-gateway call|devices|nodes|events`): its commands,
//!   its calls on `pincer-client`, its typed rendering.
//! * [`secret`]: random tokens and ids (crash-safe files come from `pincer-os`).

pub mod admit;
pub mod auth;
pub mod config;
pub mod conn;
pub mod dedupe;
pub mod devices;
pub mod handshake;
pub mod health;
pub mod hub;
pub mod limits;
pub mod link;
pub mod methods;
pub mod nodes;
pub mod operator;
pub mod pairing;
pub mod presence;
pub mod secret;
pub mod server;
pub mod upgrade;

pub use config::Config;
pub use server::{Gateway, GatewayError};

/// Version reported in `hello-ok.server.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Name reported alongside the version.
pub const IMPLEMENTATION: &str = "pincer-gateway";

/// Milliseconds since the Unix epoch.
pub use pincer_os::now_ms;
