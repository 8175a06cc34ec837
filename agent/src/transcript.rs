//! What a session's history is made of: user turns, assistant turns (text and tool calls) and
//! tool results, as the session store keeps them and as every provider dialect is fed them.

use serde::{Deserialize, Serialize};

/// An image passed to or from the model (a camera snap in a tool result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// `image/jpeg`, `image/png`, …
    pub mime_type: String,
    /// The bytes, standard base64.
    pub data: String,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id (`call_…`, `toolu_…`).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text (possibly invalid; the tool says so).
    pub arguments: String,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// A complete answer.
    Stop,
    /// It wants tool results.
    ToolUse,
    /// The output token limit.
    Length,
    /// Aborted by a client.
    Aborted,
    /// The run failed.
    Error,
}

impl StopReason {
    /// The reference's word for it (`stop`, `toolUse`, `length`, `aborted`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Stop => "stop",
            StopReason::ToolUse => "toolUse",
            StopReason::Length => "length",
            StopReason::Aborted => "aborted",
            StopReason::Error => "error",
        }
    }
}

/// Token counts a provider reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

/// One entry of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "camelCase")]
pub enum Message {
    /// What a person (or a channel, or a cron job) said.
    User {
        /// The text as the model sees it.
        text: String,
        /// Attached images.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<Image>,
        /// When, ms since the epoch.
        timestamp: u64,
        /// The run it started (`idempotencyKey`).
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "runId")]
        run_id: Option<String>,
    },
    /// What the model answered.
    Assistant {
        /// Its text (may be empty when it only called tools).
        text: String,
        /// Its tool calls, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "toolCalls")]
        tool_calls: Vec<ToolCall>,
        /// Why it stopped.
        #[serde(rename = "stopReason")]
        stop_reason: StopReason,
        /// `<provider>/<model>` that answered (`gateway-injected` for `chat.inject`).
        model: String,
        /// Tokens used.
        #[serde(default)]
        usage: Usage,
        /// When, ms since the epoch.
        timestamp: u64,
        /// The run.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "runId")]
        run_id: Option<String>,
    },
    /// What a tool returned for one call.
    ToolResult {
        /// The call it answers.
        #[serde(rename = "toolCallId")]
        tool_call_id: String,
        /// The tool.
        #[serde(rename = "toolName")]
        tool_name: String,
        /// Its text (JSON for node results).
        text: String,
        /// Images it returned (a photo).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<Image>,
        /// Whether the call failed.
        #[serde(default, rename = "isError")]
        is_error: bool,
        /// When, ms since the epoch.
        timestamp: u64,
    },
    /// A marker: the session was reset here; the model sees nothing before it.
    Reset {
        /// When, ms since the epoch.
        timestamp: u64,
    },
}

impl Message {
    /// When the entry was made.
    pub fn timestamp(&self) -> u64 {
        match self {
            Message::User { timestamp, .. }
            | Message::Assistant { timestamp, .. }
            | Message::ToolResult { timestamp, .. }
            | Message::Reset { timestamp } => *timestamp,
        }
    }
}

/// A user turn as its sender typed it: the transcript keeps what the model saw, with the
/// `[Ddd YYYY-MM-DD HH:MM UTC] ` stamp after any `System:` lines; history shows it without.
pub fn as_typed(text: &str) -> String {
    let body_at = text
        .find("\n\n[")
        .filter(|_| text.starts_with("System: "))
        .map_or(0, |i| i + 2);
    let (system, body) = text.split_at(body_at);
    match body.strip_prefix('[').and_then(|b| b.split_once("] ")) {
        Some((stamp, rest)) if stamp.len() == 24 && stamp.ends_with(" UTC") => {
            format!("{system}{rest}")
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod typed_tests {
    use super::as_typed;

    #[test]
    fn history_shows_a_user_turn_without_the_models_time_stamp() {
        assert_eq!(
            as_typed("[Wed 2026-12-02 08:05 UTC] Hello board"),
            "Hello board"
        );
        assert_eq!(
            as_typed("System: cron ran\n\n[Wed 2026-12-02 08:05 UTC] hi\n\n[x] y"),
            "System: cron ran\n\nhi\n\n[x] y"
        );
        assert_eq!(as_typed("[not a stamp] hi"), "[not a stamp] hi");
    }
}
