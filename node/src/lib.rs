//! # pincer-node
//!
//! A headless OpenClaw node: keeps one authenticated WebSocket to a gateway (pincer-gateway or
//! OpenClaw's own), pairs, reconnects by itself, and serves `node.invoke.request`s by running
//! the commands its enabled capability classes provide.
//!
//! **Owns:** the node's identity and device token on disk, the connect / pair / reconnect loop,
//! invoke dispatch (concurrency, timeouts, cancellation, size limits), and the `system.*`
//! commands. **Must not touch:** gateway-side policy (what a node may run is the gateway's
//! decision) or hardware directly — camera, screen, audio and location come from `pincer-hal`.
//!
//! ## Where a frame goes
//!
//! ```text
//! link (socket, challenge, connect, hello-ok) ──▶ invoke (node.invoke.request → command)
//!   ▲    backoff between attempts, watchdog on ticks        │
//!   └────────────── node.invoke.result ◀──────────────────────┘
//! ```
//!
//! * [`config`]: flags, `node.toml` and environment.
//! * identity and device tokens, dialling and the handshake: [`pincer_client`], the one client
//!   path (`IdentityFiles::node`: `identity.json`, `device-auth.json` in the state dir).
//! * [`link`]: one connection's life and the reconnect loop; [`backoff`], [`watchdog`].
//! * [`invoke`]: dispatch of invokes to [`commands`].
//! * [`doctor`]: what works on this board, one check per line.
//! * [`provision`]: a board's `pincer.toml` (the SD image's first boot) checked and turned into
//!   `node.toml`, plus what the OS steps still do.

#![warn(missing_docs)]

pub mod backoff;
pub mod board;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod invoke;
pub mod link;
pub mod provision;
pub mod watchdog;

/// Version reported in `client.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch.
pub use pincer_os::now_ms;
