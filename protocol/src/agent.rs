//! Params of the agent methods (`chat.*`, `agent`, `agent.wait`, `sessions.*`, `models.list`)
//! as the reference names them (`openai-agent.md` §3–§7 of the reference notes). The fields
//! the gateway acts on are typed; the reference's other fields (UI guards, channel routing,
//! thinking levels…) are accepted and ignored: these objects are open, where the reference's
//! are closed, so a newer client's extra field never costs a turn.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `chat.send` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChatSendParams {
    /// The session (`main` and other aliases are resolved).
    pub session_key: String,
    /// The user's text (may be empty with attachments).
    pub message: String,
    /// The run id; a repeat answers `in_flight` or the cached result.
    pub idempotency_key: String,
    /// `[{type?, mimeType?, fileName?, content?}]`; images become image content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
    /// `false` from the Control UI; channel delivery once channels exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
}

/// `chat.history` and `chat.startup` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChatHistoryParams {
    /// The session.
    pub session_key: String,
    /// Newest entries to return (1..1000, default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Newest entries to skip (the previous page's `nextOffset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Characters of one entry's text shown (longer is cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
    /// A previous answer's `deltaCursor`: only what came after it (`{kind:"delta"}`), or
    /// `{kind:"reset"}` when the session started over since. Not with `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `chat.abort` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChatAbortParams {
    /// The session.
    pub session_key: String,
    /// One run (default: every run of the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// `chat.inject` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChatInjectParams {
    /// An existing session.
    pub session_key: String,
    /// The assistant text to add.
    pub message: String,
    /// Shown as `[label]` before it (≤ 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `agent` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentParams {
    /// The user's text.
    pub message: String,
    /// The run id.
    pub idempotency_key: String,
    /// The session (default `agent:main:main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// With `model`: the provider for this run only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model for this run only (`<provider>/<model>`, or with `provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// As for `chat.send`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
}

/// `agent.wait` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentWaitParams {
    /// The run.
    pub run_id: String,
    /// How long to wait (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `sessions.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionsListParams {
    /// Rows per page (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Rows to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Only keys or labels containing this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

/// `sessions.preview` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionsPreviewParams {
    /// The sessions.
    pub keys: Vec<String>,
    /// Entries per session (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Characters per entry (at least 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
}

/// `sessions.resolve`, `sessions.patch`, `sessions.reset`, `sessions.delete` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionKeyParams {
    /// The session (required except for `sessions.resolve` by label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `sessions.patch`: a label (empty clears); `sessions.resolve`: find by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `sessions.patch`: `<provider>/<model>` for the session's next turns, or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Value>,
    /// `sessions.resolve`: answer for a key that does not exist yet (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_missing: Option<bool>,
}

/// `wake` params (an open object, as in the reference).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WakeParams {
    /// `now` (a run at once) or `next-heartbeat` (queued for the next turn).
    pub mode: WakeMode,
    /// The system event's text.
    pub text: String,
    /// The session (default `agent:main:main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// When a wake's text reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum WakeMode {
    /// A run now.
    #[serde(rename = "now")]
    Now,
    /// With the next turn.
    #[serde(rename = "next-heartbeat")]
    NextHeartbeat,
}

/// `send` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SendParams {
    /// The recipient on the channel.
    pub to: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The channel (`telegram`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `cron.add` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CronAddParams {
    /// The job's name.
    pub name: String,
    /// `{kind:"every", everyMs, anchorMs?}` or `{kind:"at", at}` (ms or ISO-8601 UTC).
    pub schedule: Value,
    /// `main`, `isolated`, `current` or `session:<key>`.
    pub session_target: String,
    /// `now` or `next-heartbeat`.
    pub wake_mode: String,
    /// `{kind:"agentTurn", message, model?}` or `{kind:"systemEvent", text}`.
    pub payload: Value,
    /// Off: kept but not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// For `sessionTarget:"current"`: the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// `cron.remove`, `cron.run`, `cron.get`, `cron.runs`, `cron.update` params: the job by `id`
/// or `jobId`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CronJobParams {
    /// The job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The job (alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `cron.run`: `due`, `force` (default) or `if-enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `cron.update`: `{enabled?, name?, schedule?, payload?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// `cron.runs`: entries per page (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// `cron.runs`: entries to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}
