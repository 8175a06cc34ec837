//! What can go wrong between a client and a gateway.

use std::time::Duration;

use pincer_protocol::error::ErrorShape;

use crate::identity::IdentityError;

/// Errors of the client path, from dialling to a method's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket did not open (DNS, refused, TLS, pin mismatch, HTTP status on upgrade).
    #[error("cannot connect to {url}: {message}")]
    Dial {
        /// The URL dialled.
        url: String,
        /// Why.
        message: String,
    },
    /// The URL or an option is unusable before any I/O.
    #[error("{0}")]
    Config(String),
    /// A step took longer than it may.
    #[error("{step}: timed out after {after:?}")]
    Timeout {
        /// What was awaited.
        step: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The gateway closed the socket (close code and reason), or it broke.
    #[error("gateway closed the connection ({0})")]
    Closed(String),
    /// The gateway sent something this protocol does not allow here.
    #[error("unexpected frame from gateway: {0}")]
    Protocol(String),
    /// `connect` was refused.
    #[error("connect refused: {0}")]
    Refused(ErrorShape),
    /// A method returned an error.
    #[error("{0}")]
    Method(ErrorShape),
    /// The device identity on disk.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl ClientError {
    /// The error's `details.code` (or its `code`) when the gateway refused or failed a request.
    pub fn gateway_code(&self) -> Option<&str> {
        match self {
            ClientError::Refused(e) | ClientError::Method(e) => {
                Some(e.detail_code().unwrap_or(&e.code))
            }
            _ => None,
        }
    }
}
