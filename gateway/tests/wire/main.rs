//! pincer-gateway's wire behaviour, against the real binary over real sockets: one module per
//! rule of the reference (`openclaw-protocol.md`), each naming the section it pins. Every test
//! drives the binary through the shared `support` module (gateway process on a free port, raw
//! WebSocket client, `Connect` builder), so a client could notice each failure.
//!
//! Run: `cargo test -p pincer-gateway --test wire` (add a module path to filter, e.g.
//! `-- device_proof::`).

#[path = "../support/mod.rs"]
mod support;

mod after_hello;
mod auth;
mod challenge;
mod cli;
mod connect_params;
mod device_proof;
mod device_tokens;
mod events;
mod first_frame;
mod framing;
mod hello;
mod methods;
mod pairing;
mod protocol;
mod schemas;
mod scopes;
mod shapes;
mod shutdown;

use pincer_protocol::identity::DeviceKeyPair;
use serde_json::{json, Value};

/// `error.details.code` of a response, or "".
fn detail(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

/// `error.message` of a response, or "".
fn message(res: &Value) -> &str {
    res["error"]["message"].as_str().unwrap_or("")
}

/// A `device` block signed over a payload string written out by hand (not through
/// `SignedFields`), so a test pins the reference's byte layout (§2.4) independently of the
/// protocol crate.
fn device_block(key: &DeviceKeyPair, payload: &str, signed_at: u64, nonce: &str) -> Value {
    json!({
        "id": key.public_key().device_id().to_hex().as_str(),
        "publicKey": key.public_key().to_base64url().as_str(),
        "signature": key.sign_base64url(payload.as_bytes()).as_str(),
        "signedAt": signed_at,
        "nonce": nonce,
    })
}
