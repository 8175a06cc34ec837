//! # pincer-protocol
//!
//! The OpenClaw gateway wire protocol as Rust types: frames (`req` / `res` / `event`), the
//! `connect` handshake, `hello-ok`, error shapes and codes, close codes, method params, device
//! identity (Ed25519, `deviceId`, base64url) and the exact v2/v3 signature payload strings.
//!
//! **Owns:** what bytes on the wire mean, and which frames are valid (the JSON Schemas under
//! `protocol/schema/` are generated from these types and must stay in step with them).
//!
//! **Must not touch:** sockets, files, clocks, threads or randomness sources other than key
//! generation. Gateways and nodes do the I/O; this crate only encodes, decodes and checks.
//!
//! ## Layers
//!
//! * Core (builds `no_std`, `default-features = false`): [`base64url`], [`identity`] (keys,
//!   `deviceId`, signature payloads, sign/verify), [`envelope`] (frame header decoding and
//!   encoding with `serde-json-core` + `heapless`), [`close`] codes, [`version`], [`weight`]
//!   (how many values a JSON text holds, before anyone decodes it into a tree), [`ws_meter`]
//!   (how large a WebSocket message says it is, before anyone buffers it).
//! * `std` (default): [`frames`], [`error`], [`connect`], [`methods`], [`agent`], [`decode`] — the full
//!   typed protocol over `serde_json`, used by `pincer-gateway` and `pincer-node`.
//! * `schema`: JSON Schema generation ([`schema`]).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod base64url;
pub mod close;
pub mod envelope;
pub mod identity;
pub mod version;
pub mod weight;
pub mod ws_meter;

#[cfg(feature = "std")]
pub mod agent;
#[cfg(feature = "std")]
pub mod connect;
#[cfg(feature = "std")]
pub mod decode;
#[cfg(feature = "std")]
pub mod error;
#[cfg(feature = "std")]
pub mod frames;
#[cfg(feature = "std")]
pub mod methods;
#[cfg(feature = "std")]
pub mod scopes;
#[cfg(feature = "std")]
pub mod text;

#[cfg(feature = "schema")]
pub mod schema;

/// At most `max` bytes of `s`, cut on a character boundary: how every value a peer sent is
/// bounded before it is echoed, kept or logged (close reasons, refusals, client metadata).
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`clip`] in place; true when `s` was cut.
#[cfg(feature = "std")]
pub fn clip_in_place(s: &mut String, max: usize) -> bool {
    let len = clip(s, max).len();
    let cut = len < s.len();
    s.truncate(len);
    cut
}
