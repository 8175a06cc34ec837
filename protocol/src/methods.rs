//! Params and results of the methods Pincer implements, as closed objects (reference §4.4).
//!
//! Every method here has a generated params and result schema under `protocol/schema/methods/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connect::PresenceEntry;
use crate::text::NonEmpty;

/// Params of methods that take none: `{}` and nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EmptyParams {}

/// `health` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
}

/// `channels.status` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelsStatusParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `system-event` params: record a presence beacon / system event. Pincer adds an optional
/// `idempotencyKey` so that a retried call is applied once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemEventParams {
    pub text: NonEmpty,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<NonEmpty>,
}

/// `system-event` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SystemEventResult {
    pub ok: bool,
    /// Position of this event in the queue (1-based), stable across retries.
    pub queued: u64,
}

/// Sessions block of a health summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionsHealth {
    pub path: String,
    pub count: u64,
    pub recent: Vec<Value>,
}

/// One agent in a health summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentHealth {
    pub agent_id: String,
    pub is_default: bool,
    pub heartbeat: Value,
    pub sessions: SessionsHealth,
}

/// `health` result and `health` event payload (`HealthSummary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthSummary {
    pub ok: bool,
    pub ts: u64,
    pub duration_ms: u64,
    pub channels: BTreeMap<String, Value>,
    pub channel_order: Vec<String>,
    pub channel_labels: BTreeMap<String, String>,
    pub heartbeat_seconds: u64,
    pub default_agent_id: String,
    pub agents: Vec<AgentHealth>,
    pub sessions: SessionsHealth,
    /// Pincer extension: connected clients and nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayHealth>,
}

/// Pincer's own health figures inside `HealthSummary.gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GatewayHealth {
    pub implementation: String,
    pub version: String,
    pub connections: u64,
    pub nodes: u64,
}

/// `status` result (`StatusSummary`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    pub runtime_version: String,
    pub heartbeat: Value,
    pub channel_summary: Vec<String>,
    pub queued_system_events: Vec<String>,
    pub tasks: Value,
    pub task_audit: Value,
    pub sessions: Value,
    /// Pincer extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Value>,
}

/// `system-presence` result: a bare array.
pub type SystemPresenceResult = Vec<PresenceEntry>;

/// `channels.status` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChannelsStatusResult {
    pub ts: u64,
    pub channel_order: Vec<String>,
    pub channel_labels: BTreeMap<String, String>,
    pub channels: BTreeMap<String, Value>,
    pub channel_accounts: BTreeMap<String, Value>,
    pub channel_default_account_id: BTreeMap<String, String>,
}

/// `config.get` result: the redacted config and its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigGetResult {
    pub path: String,
    pub exists: bool,
    pub valid: bool,
    pub hash: String,
    pub config: Value,
    pub issues: Vec<Value>,
}
