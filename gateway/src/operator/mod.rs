//! The operator CLI: `pincer-gateway call|chat|devices|nodes|events`. The commands ([`Command`],
//! parsed by clap in the binary), how they reach a gateway ([`call`], on `pincer-client`) and
//! how their results are shown ([`render`], from typed views). The binary only parses and
//! prints.

pub mod call;
pub mod chat;
mod commands;
pub mod render;

pub use call::CallOptions;
pub use commands::{ClientArgs, Command, DevicesCmd, NodesCmd, PairingCmd};

use std::path::PathBuf;

use pincer_client::ClientError;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Reaching the gateway, or the gateway's answer.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag's value.
    #[error("{0}")]
    Usage(String),
    /// The result is not what the command expected.
    #[error("{0}")]
    Result(String),
    /// Writing a file.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gateway closed an event stream with something else than a normal closure.
    #[error("closed with {code} {reason}")]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}
