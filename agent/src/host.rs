//! What the agent needs from the gateway that hosts it, as a trait the gateway implements: event
//! fan-out to clients and node commands. The agent never sees a socket.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// Who an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every operator allowed to read sessions.
    Readers,
    /// The `tool` stream: only the connection that started the run, if it asked for
    /// `caps:["tool-events"]`.
    ToolRecipients {
        /// The connection that started the run (`None`: a run no client started).
        origin: Option<u64>,
    },
    /// Readers that called `sessions.subscribe` (`sessions.changed`).
    SessionWatchers,
    /// Readers that called `sessions.messages.subscribe` for the payload's `sessionKey`
    /// (`session.message`).
    MessageWatchers,
}

/// A node command's failure, as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeError {
    /// `UNAVAILABLE`, `NODE_NOT_FOUND`, `TIMEOUT`, a node's own code…
    pub code: String,
    /// What happened.
    pub message: String,
}

/// A boxed future, as the host returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gateway, as the agent sees it.
pub trait Host: Send + Sync + 'static {
    /// Sends `event` (`agent`, `chat`, …) with `payload` to `to`.
    fn emit(&self, event: &str, payload: &Value, to: Audience);
    /// The nodes (`node.list`'s `nodes`: `nodeId`, `displayName`, `platform`, `caps`,
    /// `commands`, `connected`, …).
    fn nodes(&self) -> Vec<Value>;
    /// Runs `command` on `node_id` (as `node.invoke` would, under the node's policy); the
    /// node's payload.
    fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params_json: Option<String>,
        timeout_ms: u64,
        idempotency_key: String,
    ) -> BoxFuture<Result<Value, InvokeError>>;

    /// Sends `text` to `to` on a messaging channel (`channel`: `None` for the only one
    /// configured); the channel's receipt (`{channel, to, chatId, messageId}`). Codes:
    /// `NO_CHANNELS` (none configured), `UNKNOWN_CHANNEL`, `BAD_TARGET`, `DELIVERY_FAILED`.
    fn deliver(
        &self,
        channel: Option<String>,
        to: String,
        text: String,
    ) -> BoxFuture<Result<Value, InvokeError>> {
        let _ = (channel, to, text);
        Box::pin(async { Err(InvokeError::no_channels()) })
    }
}

impl InvokeError {
    /// `NO_CHANNELS`: [`Host::deliver`] with no messaging channel configured.
    pub fn no_channels() -> InvokeError {
        InvokeError {
            code: "NO_CHANNELS".into(),
            message: "no messaging channel is configured".into(),
        }
    }
}
