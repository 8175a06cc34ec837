//! What a method handler returns, shared by the dispatcher (`methods`) and the handlers
//! in other modules (`pairing`), so neither imports the other.

use pincer_protocol::error::{code, ErrorShape};

use crate::conn::ConnHandle;

/// A method's outcome: payload JSON text, or an error.
pub type Reply = Result<String, ErrorShape>;

/// `missing scope: X` — `FORBIDDEN` at protocol 4 (as OpenClaw 2026.9), `INVALID_REQUEST` at 3.
pub fn missing_scope(conn: &ConnHandle, scope: &str) -> ErrorShape {
    let c = if conn.protocol >= 4 {
        code::FORBIDDEN
    } else {
        code::INVALID_REQUEST
    };
    ErrorShape::new(c, format!("missing scope: {scope}"))
}

/// Encodes a handler's result as the reply's payload text.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Reply {
    serde_json::to_string(v)
        .map_err(|e| ErrorShape::unavailable(format!("failed to encode result: {e}")))
}
