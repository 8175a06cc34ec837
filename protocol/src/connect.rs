//! The handshake: `connect.challenge`, `connect` params, `hello-ok`, snapshot and presence
//! (reference §2.1–2.6, §5.2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frames::StateVersion;
use crate::text::{literal, NonEmpty, Version};

/// `client.id`: an enum, not free text (v3 list plus later additions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ClientId {
    /// `webchat-ui`: the web chat UI.
    WebchatUi,
    /// `openclaw-control-ui`: the browser Control UI (Origin-checked, needs WebCrypto device identity).
    OpenclawControlUi,
    /// `openclaw-tui`: the terminal UI.
    OpenclawTui,
    /// `webchat`: a WebChat client.
    Webchat,
    /// `cli`: the `openclaw` CLI (and Pincer's operator CLI).
    Cli,
    /// `gateway-client`: the gateway's internal backend helper (mode `backend`).
    GatewayClient,
    /// `openclaw-macos`: the macOS app, operator or node mode.
    OpenclawMacos,
    /// `openclaw-ios`: the iOS app (a node socket plus an operator socket).
    OpenclawIos,
    /// `openclaw-android`: the Android app (a node socket plus an operator socket).
    OpenclawAndroid,
    /// `node-host`: a headless node host, as `pincer-node` sends.
    NodeHost,
    /// `test`: test clients.
    Test,
    /// `fingerprint`: in the v3 list; the reference does not say who sends it.
    Fingerprint,
    /// `openclaw-probe`: a status probe.
    OpenclawProbe,
    /// `openclaw-browser-copilot`: later upstream addition.
    OpenclawBrowserCopilot,
    /// `openclaw-linux`: later upstream addition.
    OpenclawLinux,
    /// `openclaw-watchos`: later upstream addition.
    OpenclawWatchos,
    /// `openclaw-worker`: later upstream addition (v4 workers).
    OpenclawWorker,
}

impl ClientId {
    /// The wire string, e.g. `"node-host"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebchatUi => "webchat-ui",
            Self::OpenclawControlUi => "openclaw-control-ui",
            Self::OpenclawTui => "openclaw-tui",
            Self::Webchat => "webchat",
            Self::Cli => "cli",
            Self::GatewayClient => "gateway-client",
            Self::OpenclawMacos => "openclaw-macos",
            Self::OpenclawIos => "openclaw-ios",
            Self::OpenclawAndroid => "openclaw-android",
            Self::NodeHost => "node-host",
            Self::Test => "test",
            Self::Fingerprint => "fingerprint",
            Self::OpenclawProbe => "openclaw-probe",
            Self::OpenclawBrowserCopilot => "openclaw-browser-copilot",
            Self::OpenclawLinux => "openclaw-linux",
            Self::OpenclawWatchos => "openclaw-watchos",
            Self::OpenclawWorker => "openclaw-worker",
        }
    }
}

/// `client.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientMode {
    /// `webchat`: browser chat clients, including the Control UI.
    Webchat,
    /// `cli`: CLI calls; not tracked in presence.
    Cli,
    /// `ui`: an app's operator UI socket.
    Ui,
    /// `backend`: the gateway's own helper client.
    Backend,
    /// `node`: a node socket (with `role: "node"`).
    Node,
    /// `probe`: a status probe (`openclaw status`); v4 accepts protocol 3 for it.
    Probe,
    /// `test`: test clients.
    Test,
    /// `worker`: later upstream addition (v4 workers).
    Worker,
}

impl ClientMode {
    /// The wire string, e.g. `"node"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webchat => "webchat",
            Self::Cli => "cli",
            Self::Ui => "ui",
            Self::Backend => "backend",
            Self::Node => "node",
            Self::Probe => "probe",
            Self::Test => "test",
            Self::Worker => "worker",
        }
    }
}

/// `connect.client`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientInfo {
    /// Which client this is: an enum value, not free text.
    pub id: ClientId,
    /// Name shown in pairing lists and `node.list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<NonEmpty>,
    /// The client software's version.
    pub version: NonEmpty,
    /// The client's build (the Control UI sends its bundle's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<NonEmpty>,
    /// OS platform (`linux`, `darwin`, …): picks the node command allowlist; pinned at pairing.
    pub platform: NonEmpty,
    /// Device family (`iPhone`, `Android`, …); pinned at pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<NonEmpty>,
    /// Hardware model, e.g. `iPhone17,1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<NonEmpty>,
    /// Self-reported IANA time zone (`Europe/Berlin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<NonEmpty>,
    /// How the client connects (`node`, `cli`, `ui`, …).
    pub mode: ClientMode,
    /// Stable per install; the presence key when there is no device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<NonEmpty>,
}

/// `connect.device`: the proof of key possession.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceProof {
    /// Device id: lowercase hex SHA-256 of the raw 32-byte public key (64 chars).
    pub id: NonEmpty,
    /// Ed25519 public key: base64url (no padding) of the raw 32 bytes; PEM SPKI also accepted.
    pub public_key: NonEmpty,
    /// base64url (no padding) of the 64-byte Ed25519 signature over the v3 (or v2) payload.
    pub signature: NonEmpty,
    /// When the payload was signed, ms since the Unix epoch; must be within ±120 s of gateway time.
    pub signed_at: u64,
    /// The socket's `connect.challenge` nonce, echoed (and signed).
    pub nonce: NonEmpty,
}

/// `connect.auth`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectAuth {
    /// The shared gateway token, or a stored device token; signed first when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// One-time bootstrap token from a setup code (first pairing of a headless device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
    /// The device token issued in an earlier `hello-ok.auth`, for this device and role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// The shared gateway password (password mode); never signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_runtime_token: Option<String>,
    /// Later v4 builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_identity_token: Option<String>,
}

/// `connect` params (closed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectParams {
    /// Lowest protocol version the client speaks.
    pub min_protocol: Version,
    /// Highest protocol version the client speaks.
    pub max_protocol: Version,
    /// Who is connecting.
    pub client: ClientInfo,
    /// Node capability categories (`system`, `camera`, …), or operator client capabilities (`tool-events`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<String>>,
    /// Commands a node offers (its invoke allowlist claim), e.g. `system.run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    /// Node permission toggles (`camera`, `location`, …), `true` when granted; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<BTreeMap<String, bool>>,
    /// The node's `PATH` (headless hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// A node's Computer Use declaration (reference v4; accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use: Option<Value>,
    /// The v1 node-host worker envelope (deprecated in the reference; accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_runs: Option<Value>,
    /// Which model catalog the client reads first (the Control UI sends `{sessionKey}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_catalog: Option<ModelCatalogScope>,
    /// `operator` (the default when absent) or `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<NonEmpty>,
    /// Operator scopes asked for; absent or empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Device identity proof; required for nodes; without it an operator's scopes are dropped
    /// (trusted local helpers excepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    /// Credentials: shared token or password, device token, bootstrap token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectAuth>,
    /// BCP-47 locale, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Free-text user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// `connect.modelCatalog`: `{agentId?, sessionKey?}` or `{agentId?, shortId, slugHint?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelCatalogScope {
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<NonEmpty>,
    /// The session whose catalog is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<NonEmpty>,
    /// A shared catalog's short id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_id: Option<NonEmpty>,
    /// Its slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug_hint: Option<NonEmpty>,
}

impl ConnectParams {
    /// The role as the gateway resolves it: `operator` when absent.
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or("operator")
    }

    /// The scopes as sent (empty when absent).
    pub fn scopes(&self) -> &[String] {
        self.scopes.as_deref().unwrap_or(&[])
    }
}

/// `connect.challenge` payload. Tolerant: gateways add fields (e.g. `capabilities`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChallengePayload {
    /// Fresh UUIDv4 per socket; the client signs it and echoes it in `device.nonce`.
    pub nonce: NonEmpty,
    /// Gateway time, ms since the Unix epoch.
    pub ts: u64,
}

/// One presence entry. Open on decode: the reference adds keys to the entries of some clients
/// (a Control UI's carries `user`, `onlineSince`, `timeZone`, `lastActivityAt`), and a client
/// that refused them could not join a gateway a browser had visited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    /// `client.id` of the connection (`openclaw-control-ui`, `pincer-node`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Host name of the client's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The client's OS platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Device family (`iPhone`, `Android`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Hardware model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// `client.mode`, or `gateway` for the gateway's own entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Seconds since the user's last input on that machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
    /// Why the entry was written: `self`, `connect`, `disconnect`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Human-readable status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When the entry was last updated, ms since the Unix epoch.
    pub ts: u64,
    /// The client's device id, when it connected with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Roles the client holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Scopes the client holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// `client.instanceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `client.timeZone`, when the client sent one (IANA name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// When this client's connection opened, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_since: Option<u64>,
}

/// `hello-ok.snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Current presence list, the gateway's own entry included.
    pub presence: Vec<PresenceEntry>,
    /// The cached `HealthSummary`, or `{}` before the first one.
    pub health: Value,
    /// Counters of the presence and health state this snapshot shows.
    pub state_version: StateVersion,
    /// Gateway uptime, ms.
    pub uptime_ms: u64,
    /// Gateway config file path (`operator.admin` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// Gateway state directory (`operator.admin` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Gateway auth mode: `none`, `token`, `password`, `trusted-proxy` (`operator.admin` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// Default agent and session keys (reference; Pincer has no agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_defaults: Option<Value>,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// The gateway's software version.
    pub version: String,
    /// Per-socket connection id (a UUID).
    pub conn_id: String,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Features {
    /// Methods the gateway implements; clients may check before calling.
    pub methods: Vec<String>,
    /// Events the gateway may send.
    pub events: Vec<String>,
}

/// `hello-ok.auth` (always present: v4 clients require it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// Device token issued for this device and role; store it and send it on the next connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// The role the connection was granted.
    pub role: String,
    /// The scopes the connection (and its device token) holds.
    pub scopes: Vec<String>,
    /// When the device token was issued, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
    /// How the connection authenticated (`token`, `password`, `device-token`, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Largest frame accepted after the handshake, bytes (reference: 25 MiB).
    pub max_payload: u64,
    /// Per-connection outbound buffer before a slow consumer is dropped, bytes (reference: 50 MiB).
    pub max_buffered_bytes: u64,
    /// Interval between `tick` events, ms; clients give up after twice this with no frame.
    pub tick_interval_ms: u64,
}

literal!(HelloOkTag, "hello-ok");

/// The `connect` success payload. Open on decode: newer gateways add keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// `type`: always `"hello-ok"`.
    #[serde(rename = "type")]
    pub kind: HelloOkTag,
    /// The negotiated protocol version.
    pub protocol: u32,
    /// Gateway version and this connection's id.
    pub server: ServerInfo,
    /// Methods and events the gateway supports.
    pub features: Features,
    /// Presence, health and state counters at connect time.
    pub snapshot: Snapshot,
    /// Granted role and scopes, and the device token when one was issued (Pincer always sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HelloAuth>,
    /// Frame and buffer limits and the tick interval.
    pub policy: Policy,
}

/// `tick` payload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TickPayload {
    /// Gateway time, ms since the Unix epoch.
    pub ts: u64,
}

/// `shutdown` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ShutdownPayload {
    /// Why the gateway is stopping, e.g. `gateway stopping`.
    pub reason: String,
    /// How soon the gateway expects to be back, ms; absent when it is not restarting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_expected_ms: Option<u64>,
}

/// `presence` event payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PresencePayload {
    /// The full presence list (not a delta).
    pub presence: Vec<PresenceEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Control UI's entry exactly as openclaw@2026.9.6 lists it in `hello-ok.snapshot.presence`
    /// (after the browser disconnected): keys Pincer does not model are skipped, not refused.
    #[test]
    fn the_reference_presence_entry_of_a_control_ui_decodes() {
        let entry = r#"{"clientId":"openclaw-control-ui","mode":"webchat",
            "user":{"id":"gateway-owner","identity":{"type":"profile","id":"gateway-owner"},
                    "avatarUrl":"/api/users/gateway-owner/avatar?v=1796219239057"},
            "onlineSince":1796219239661,"roles":["operator"],
            "scopes":["operator.admin","operator.read","operator.write","operator.approvals",
                      "operator.questions","operator.pairing"],
            "ts":1796219248959,"text":"Node: unknown · mode webchat","host":"openclaw-control-ui",
            "version":"2026.9.6","platform":"Linux x86_64","timeZone":"UTC",
            "deviceId":"1477ec925c09a9c9c92742119a62f3bea882117ab94566452fbf41b4967333af",
            "instanceId":"5834bf90-8bf7-40e6-aa62-de4ae820bf71","reason":"disconnect",
            "lastActivityAt":1796219243839}"#;
        let e: PresenceEntry = serde_json::from_str(entry).expect("decodes");
        assert_eq!(e.client_id.as_deref(), Some("openclaw-control-ui"));
        assert_eq!(e.time_zone.as_deref(), Some("UTC"));
        assert_eq!(e.online_since, Some(1_796_219_239_661));
        assert_eq!(e.reason.as_deref(), Some("disconnect"));
        // Re-encoded, it carries only what Pincer models.
        let back = serde_json::to_value(&e).expect("encodes");
        assert!(back.get("user").is_none(), "{back}");
    }
}
