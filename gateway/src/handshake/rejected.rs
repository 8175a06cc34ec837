//! A refused handshake ([`Rejected`]: the error response, then the close) and the
//! constructors the pipeline's steps share.

use pincer_protocol::close;
use pincer_protocol::error::ErrorShape;

/// A refused handshake: the error response, then the close.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The error of the `res` sent before closing.
    pub error: Box<ErrorShape>,
    /// WebSocket close code (1008, 1002, …).
    pub close_code: u16,
    /// Close reason, at most 120 bytes.
    pub close_reason: String,
    /// Counts toward the per-IP auth failure limit.
    pub auth_failure: bool,
}

impl Rejected {
    /// Refused with `error`, then closed with `close_code` / `reason`.
    pub fn new(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
        reject(error, close_code, reason)
    }

    /// Refused for a server-side failure (as a device store error is).
    pub fn unavailable(message: String) -> Rejected {
        tracing::error!(%message, "connect refused");
        reject(
            ErrorShape::unavailable(message),
            close::POLICY_VIOLATION,
            "device store error",
        )
    }

    fn auth(mut self) -> Self {
        self.auth_failure = true;
        self
    }
}

pub(super) fn reject(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
    Rejected {
        error: Box::new(error),
        close_code,
        close_reason: close::truncate_reason(reason).to_owned(),
        auth_failure: false,
    }
}

/// [`reject`], counted as an authentication failure.
pub(super) fn auth_reject(error: ErrorShape, close_code: u16, reason: &str) -> Rejected {
    reject(error, close_code, reason).auth()
}

/// Refused because the device store failed.
pub(super) fn store_error(e: crate::devices::DeviceStoreError) -> Rejected {
    if let crate::devices::DeviceStoreError::PendingFull(_) = e {
        tracing::warn!(error = %e, "pairing request refused");
        return reject(
            ErrorShape::unavailable(e.to_string()).retry_after(60_000),
            close::POLICY_VIOLATION,
            "too many pending pairing requests",
        );
    }
    tracing::error!(error = %e, "device store");
    reject(
        ErrorShape::unavailable(e.to_string()),
        close::POLICY_VIOLATION,
        "device store error",
    )
}
