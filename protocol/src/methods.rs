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
    /// Recompute now instead of serving the cached summary (cached for 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
}

/// `channels.status` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelsStatusParams {
    /// Probe each channel account live (Pincer has no channels; accepted and ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
    /// Probe timeout, ms (accepted and ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `system-event` params: record a presence beacon / system event. Pincer adds an optional
/// `idempotencyKey` so that a retried call is applied once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemEventParams {
    /// The event text, queued for `status.queuedSystemEvents` and shown as presence text.
    pub text: NonEmpty,
    /// Reporting device's id; the presence key when `instanceId` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Reporting client's `instanceId`; the presence key when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Host name for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// IP address for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client mode for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Client version for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Platform for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Device family for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Hardware model for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// Seconds since the user's last input, for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
    /// Why the beacon was sent, for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Roles for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Scopes for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Tags for the presence entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Pincer: a retry with the same key returns the first result instead of queueing twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<NonEmpty>,
}

/// `system-event` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SystemEventResult {
    /// Always true on success.
    pub ok: bool,
    /// Position of this event in the queue (1-based), stable across retries.
    pub queued: u64,
}

/// Sessions block of a health summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionsHealth {
    /// Path of the sessions store.
    pub path: String,
    /// Number of sessions (0: Pincer runs no agents).
    pub count: u64,
    /// Recently updated sessions (`{key, updatedAt, age}`).
    pub recent: Vec<Value>,
}

/// One agent in a health summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentHealth {
    /// Agent id.
    pub agent_id: String,
    /// Whether this is the default agent.
    pub is_default: bool,
    /// The agent's heartbeat settings and state, as the reference reports them.
    pub heartbeat: Value,
    /// The agent's sessions.
    pub sessions: SessionsHealth,
}

/// `health` result and `health` event payload (`HealthSummary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthSummary {
    /// Overall health; true whenever the gateway answers.
    pub ok: bool,
    /// When the summary was computed, ms since the Unix epoch.
    pub ts: u64,
    /// How long computing it took, ms.
    pub duration_ms: u64,
    /// Per-channel status by channel id (empty: Pincer has no channels).
    pub channels: BTreeMap<String, Value>,
    /// Channel ids in display order.
    pub channel_order: Vec<String>,
    /// Display label per channel id.
    pub channel_labels: BTreeMap<String, String>,
    /// Agent heartbeat interval, seconds (0: none).
    pub heartbeat_seconds: u64,
    /// Id of the default agent (`main`).
    pub default_agent_id: String,
    /// Agents and their sessions (empty in Pincer).
    pub agents: Vec<AgentHealth>,
    /// The sessions store.
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
    /// Gateway implementation name (`pincer-gateway`).
    pub implementation: String,
    /// Gateway version.
    pub version: String,
    /// Connected nodes (kept current: health is refreshed when one comes or goes).
    pub nodes: u64,
}

/// `status` result (`StatusSummary`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    /// Gateway implementation and version, e.g. `pincer-gateway 0.1.0`.
    pub runtime_version: String,
    /// `{defaultAgentId, agents[]}`.
    pub heartbeat: Value,
    /// One human-readable line per channel.
    pub channel_summary: Vec<String>,
    /// Texts queued by `system-event`, oldest first.
    pub queued_system_events: Vec<String>,
    /// Background task counters by status and runtime.
    pub tasks: Value,
    /// Task audit counters (`total`, `warnings`, `errors`, `byCode`).
    pub task_audit: Value,
    /// Session store summary (`paths`, `count`, `defaults`, `recent`, `byAgent`).
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
    /// When the status was taken, ms since the Unix epoch.
    pub ts: u64,
    /// Channel ids in display order (empty when none is configured).
    pub channel_order: Vec<String>,
    /// Display label per channel id.
    pub channel_labels: BTreeMap<String, String>,
    /// Longer label per channel id (`Telegram Bot`).
    #[serde(default)]
    pub channel_detail_labels: BTreeMap<String, String>,
    /// Icon name per channel id (the reference's SF Symbols names, `paperplane`).
    #[serde(default)]
    pub channel_system_images: BTreeMap<String, String>,
    /// `{id, label, detailLabel, systemImage}` per channel, in order.
    #[serde(default)]
    pub channel_meta: Vec<Value>,
    /// Status per channel id.
    pub channels: BTreeMap<String, Value>,
    /// Accounts per channel id.
    pub channel_accounts: BTreeMap<String, Value>,
    /// Default account id per channel id.
    pub channel_default_account_id: BTreeMap<String, String>,
    /// Problems to show (a refused token).
    #[serde(default)]
    pub status_issues: Vec<Value>,
}

/// `config.get` result: the redacted config and its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigGetResult {
    /// Path of the config file (empty when there is none).
    pub path: String,
    /// Whether a config file was loaded.
    pub exists: bool,
    /// Whether the config is valid.
    pub valid: bool,
    /// SHA-256 (hex) of the redacted config text; the `baseHash` for later edits.
    pub hash: String,
    /// The effective config, secrets redacted.
    pub config: Value,
    /// Validation issues (empty when valid).
    pub issues: Vec<Value>,
}

/// `{requestId}` params (`device.pair.approve|reject`, `node.pair.approve|reject`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestIdParams {
    /// `requestId` of a pending request (Pincer also takes its short code).
    pub request_id: NonEmpty,
}

/// `{deviceId}` params (`device.pair.remove`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceIdParams {
    /// The paired device's id.
    pub device_id: NonEmpty,
}

/// `device.token.rotate` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRotateParams {
    /// The paired device whose token is replaced.
    pub device_id: NonEmpty,
    /// Which of the device's roles the token is for.
    pub role: NonEmpty,
    /// Scopes of the new token, bounded by the approved ones; absent keeps the current scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `device.token.revoke` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRevokeParams {
    /// The paired device whose token is revoked.
    pub device_id: NonEmpty,
    /// Which of the device's roles loses its token.
    pub role: NonEmpty,
}

/// `device.pair.setupCode` params (admin): a one-time setup code for headless first boot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetupCodeParams {
    /// Role the code admits (default `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<NonEmpty>,
    /// Lifetime (default 10 minutes, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Gateway URL to embed in the setup code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `device.pair.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevicePairListResult {
    /// Pending pairing requests (expire after 5 minutes).
    pub pending: Vec<Value>,
    /// Paired devices, redacted: token summaries instead of tokens.
    pub paired: Vec<Value>,
}

/// `device.pair.approve` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DevicePairApproveResult {
    /// The approved request's id.
    pub request_id: String,
    /// The paired device record, redacted.
    pub device: Value,
}

/// `device.pair.reject` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DevicePairRejectResult {
    /// The rejected request's id.
    pub request_id: String,
    /// The device that asked.
    pub device_id: String,
}

/// `device.pair.remove` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdResult {
    /// The removed device's id.
    pub device_id: String,
}

/// `device.token.rotate` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenRotateResult {
    /// The device the token belongs to.
    pub device_id: String,
    /// The role the token is for.
    pub role: String,
    /// The new device token (the old one stops working; its sockets are closed 4001).
    pub token: String,
    /// The new token's scopes.
    pub scopes: Vec<String>,
    /// When it was rotated, ms since the Unix epoch.
    pub rotated_at_ms: u64,
}

/// `device.token.revoke` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenRevokeResult {
    /// The device the token belonged to.
    pub device_id: String,
    /// The role the token was for.
    pub role: String,
    /// When it was revoked, ms since the Unix epoch.
    pub revoked_at_ms: u64,
}

/// `device.pair.setupCode` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SetupCodeResult {
    /// base64url of `{"url", "bootstrapToken"}` (the reference's QR payload).
    pub setup_code: String,
    /// The one-time token itself (`auth.bootstrapToken`).
    pub bootstrap_token: String,
    /// A human-typable form, `XXXX-XXXX`, accepted in place of the token.
    pub short_code: String,
    /// Role the code admits.
    pub role: String,
    /// When the code expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The gateway URL embedded in `setupCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Params accepted as any JSON object (node inventory updates whose shape the gateway only
/// acknowledges).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct OpenObject(pub serde_json::Map<String, Value>);

/// `node.describe` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeIdParams {
    /// The node's id (its device id).
    pub node_id: NonEmpty,
}

/// `node.invoke` params (operator → gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInvokeParams {
    /// The target node's id (its device id).
    pub node_id: NonEmpty,
    /// Command to run, e.g. `camera.snap`; must be allowlisted and declared by the node.
    pub command: NonEmpty,
    /// Kept as the JSON text the operator sent: it is forwarded as `paramsJSON` and never
    /// needs a parsed tree (a 25 MB array would take ~18× its size as a `Value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Value>"))]
    pub params: Option<Box<serde_json::value::RawValue>>,
    /// How long to wait for the node's result, ms (default 30 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Required by the schema; forwarded to the node, not used for dedupe by the gateway.
    pub idempotency_key: NonEmpty,
    /// v4 gateway-only routing fields, accepted and not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// v4 gateway-only routing field, accepted and not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_source_channel: Option<String>,
    /// v4 gateway-only routing field, accepted and not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_source_to: Option<String>,
    /// v4 gateway-only routing field, accepted and not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_source_account_id: Option<String>,
    /// v4 gateway-only routing field, accepted and not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_source_thread_id: Option<String>,
}

/// `node.invoke.request` event payload (gateway → node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeRequest {
    /// Invoke id (a gateway-generated UUID); the node answers with it in `node.invoke.result`.
    pub id: String,
    /// The node's own id.
    pub node_id: String,
    /// Command to run.
    pub command: String,
    /// JSON text of the params, or null when the operator sent none.
    #[serde(default)]
    #[serde(rename = "paramsJSON")]
    pub params_json: Option<String>,
    /// Defensive: some gateways send a parsed `params` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// The operator's timeout, ms; absent when it gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The operator's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `node.invoke.cancel` event payload (v4, gateway → node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeCancel {
    /// The `id` of the `node.invoke.request` to cancel.
    pub invoke_id: String,
    /// The node's own id.
    pub node_id: String,
}

/// The error a node reports for an invoke.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeError {
    /// Error code, e.g. `INVALID_REQUEST`, `UNAVAILABLE`, `TIMEOUT`, `CAMERA_DISABLED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable text (by convention prefixed with the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `node.invoke.result` params (node → gateway).
// `J` holds `payloadJSON`: a `Value` when decoding (the gateway tolerates non-strings),
// the node's own writer when it encodes its result (the text escaped straight into the frame).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "NodeInvokeResultParams"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInvokeResultParams<J = Value> {
    /// The invoke id from `node.invoke.request`.
    pub id: NonEmpty,
    /// The caller's own node id; must match the connection's.
    pub node_id: NonEmpty,
    /// True when the command succeeded.
    pub ok: bool,
    /// The result as a JSON value (some nodes send this instead of `payloadJSON`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// A string; the gateway also tolerates null and moves non-strings into `payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "payloadJSON")]
    pub payload_json: Option<J>,
    /// Why the command failed (with `ok: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
}

/// `node.event` params (node → gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeEventParams {
    /// Event name, e.g. `voice.transcript`, `exec.finished`.
    pub event: NonEmpty,
    /// The event body as a JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The event body as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "payloadJSON")]
    pub payload_json: Option<String>,
}

/// `node.invoke` result (gateway → operator).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeResult {
    /// Always true here (a node failure is an error `res`).
    pub ok: bool,
    /// The node that ran the command.
    pub node_id: String,
    /// The command that ran.
    pub command: String,
    /// The result: `payloadJSON` parsed, else the node's `payload`.
    pub payload: Value,
    /// The node's result as JSON text, or null when it sent a parsed `payload`.
    #[serde(rename = "payloadJSON")]
    pub payload_json: Option<String>,
}

/// One node in `node.list` / `node.describe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeListNode {
    /// The node's id (its device id).
    pub node_id: String,
    /// `client.displayName` of the live session, else the paired record's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `client.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// The node's IP address as the gateway saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// `client.deviceFamily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.modelIdentifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// The node's `PATH` from `connect.pathEnv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// Capability categories, sorted.
    pub caps: Vec<String>,
    /// Effective commands: the live session's (sorted), else the approved ones.
    pub commands: Vec<String>,
    /// Permission toggles from `connect.permissions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<BTreeMap<String, bool>>,
    /// Device-paired for the node role, or its command surface approved.
    pub paired: bool,
    /// Whether the node has a live session now.
    pub connected: bool,
    /// When the live session connected, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at_ms: Option<u64>,
    /// When its command surface (else, offline, its device) was approved, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at_ms: Option<u64>,
    /// Pincer: declared commands still waiting for operator approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_commands: Vec<String>,
}

/// `node.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodeListResult {
    /// When the list was made, ms since the Unix epoch.
    pub ts: u64,
    /// Nodes, connected first, then by display name, then id.
    pub nodes: Vec<NodeListNode>,
}

/// `node.pair.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodePairListResult {
    /// Pending node surface approvals (commands waiting for an operator).
    pub pending: Vec<Value>,
    /// Nodes whose command surface is approved.
    pub paired: Vec<Value>,
}
