//! The operator CLI's text output, from typed views of the results. Each view names only the
//! fields it shows, all optional, so a gateway that omits one (an older pincer-gateway, the
//! reference) still renders; `--json` prints the payload as it came.

use serde::Deserialize;

use crate::devices::short_code;

/// A pending device pairing request as `device.pair.list` shows it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PendingDeviceView {
    /// The request id.
    pub request_id: String,
    /// The device asking.
    pub device_id: String,
    /// The role asked for.
    pub role: Option<String>,
    /// Where it connected from.
    pub remote_ip: Option<String>,
    /// When it asked (ms).
    pub ts: u64,
}

/// A paired device as `device.pair.list` shows it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PairedDeviceView {
    /// The device.
    pub device_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// Its client id, shown when it has no name.
    pub client_id: Option<String>,
    /// Roles it holds.
    pub roles: Vec<String>,
    /// Its platform.
    pub platform: Option<String>,
}

/// `device.pair.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DevicePairListView {
    /// Requests waiting.
    pub pending: Vec<PendingDeviceView>,
    /// Devices paired.
    pub paired: Vec<PairedDeviceView>,
}

/// A node as `node.list` shows it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeView {
    /// The node's id.
    pub node_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// Its platform.
    pub platform: Option<String>,
    /// Whether it is connected now.
    pub connected: bool,
    /// Commands it may run.
    pub commands: Vec<String>,
    /// Commands declared and waiting for approval (pincer-gateway).
    pub pending_commands: Vec<String>,
}

/// `node.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeListView {
    /// The nodes.
    pub nodes: Vec<NodeView>,
}

/// A node command surface waiting for approval (`node.pair.list`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PendingNodeView {
    /// The request id.
    pub request_id: String,
    /// The node.
    pub node_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// The commands it declared.
    pub commands: Vec<String>,
}

/// `node.pair.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodePairListView {
    /// Surfaces waiting.
    pub pending: Vec<PendingNodeView>,
}

/// `device.pair.setupCode`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SetupCodeView {
    /// The full code (base64url of URL + token).
    pub setup_code: String,
    /// The typable form.
    pub short_code: String,
    /// The gateway URL it embeds.
    pub url: Option<String>,
}

fn age(now_ms: u64, ts: u64) -> String {
    let s = now_ms.saturating_sub(ts) / 1000;
    if s < 120 {
        format!("{s}s ago")
    } else {
        format!("{}m ago", s / 60)
    }
}

fn prefix(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// `devices list`.
pub fn device_list(v: &DevicePairListView, now_ms: u64) -> String {
    let mut out = format!("Pending ({}):\n", v.pending.len());
    for p in &v.pending {
        out += &format!(
            "  {}  {}  device {}  role {}  from {}  {}\n",
            short_code(&p.request_id),
            p.request_id,
            prefix(&p.device_id, 12),
            p.role.as_deref().unwrap_or("?"),
            p.remote_ip.as_deref().unwrap_or("?"),
            age(now_ms, p.ts),
        );
    }
    out += &format!("Paired ({}):\n", v.paired.len());
    for d in &v.paired {
        out += &format!(
            "  {}  {}  roles {}  {}\n",
            d.device_id,
            d.display_name
                .as_deref()
                .or(d.client_id.as_deref())
                .unwrap_or("-"),
            d.roles.join(","),
            d.platform.as_deref().unwrap_or(""),
        );
    }
    if !v.pending.is_empty() {
        out += "Approve with: pincer-gateway devices approve <code>\n";
    }
    out
}

/// `nodes list`.
pub fn node_list(v: &NodeListView) -> String {
    let mut out = String::new();
    for n in &v.nodes {
        out += &format!(
            "{}  {:<20} {:<12} {}  commands: {}{}\n",
            n.node_id,
            n.display_name.as_deref().unwrap_or("-"),
            n.platform.as_deref().unwrap_or("-"),
            if n.connected {
                "connected"
            } else {
                "offline  "
            },
            n.commands.join(","),
            if n.pending_commands.is_empty() {
                String::new()
            } else {
                format!("  awaiting approval: {}", n.pending_commands.join(","))
            },
        );
    }
    out
}

/// `nodes pending`.
pub fn node_pending(v: &NodePairListView) -> String {
    let mut out = format!("Pending ({}):\n", v.pending.len());
    for p in &v.pending {
        out += &format!(
            "  {}  {}  node {}  {}  commands: {}\n",
            short_code(&p.request_id),
            p.request_id,
            p.node_id,
            p.display_name.as_deref().unwrap_or("-"),
            p.commands.join(","),
        );
    }
    if !v.pending.is_empty() {
        out += "Approve with: pincer-gateway nodes approve <code>\n";
    }
    out
}

/// `devices setup-code`.
pub fn setup_code(v: &SetupCodeView, ttl: &str) -> String {
    let url = v.url.as_deref().unwrap_or("");
    format!(
        "Setup code (one device, expires in {ttl}):\n  {}\nShort form: {}\nGateway:    {url}\nOn the node: pincer-node run --gateway {url} --setup-code {}\n",
        v.setup_code, v.short_code, v.short_code
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_render_what_a_gateway_sent_even_with_fields_missing() {
        let v: DevicePairListView = serde_json::from_value(json!({
            "pending": [{"requestId": "abcdef0123456789", "deviceId": "0123456789abcdef0123", "role": "node",
                         "remoteIp": "10.0.0.2", "ts": 1_000}],
            "paired": [{"deviceId": "d1", "clientId": "cli", "roles": ["operator"], "platform": "linux"}, {}]
        }))
        .unwrap();
        let text = device_list(&v, 61_000);
        assert!(text.contains("Pending (1):"), "{text}");
        assert!(text.contains("ABCDEF01  abcdef0123456789  device 0123456789ab  role node  from 10.0.0.2  60s ago"), "{text}");
        assert!(text.contains("  d1  cli  roles operator  linux"), "{text}");
        assert!(text.contains("Paired (2):"), "{text}");
        assert!(text.contains("Approve with"), "{text}");

        let n: NodeListView = serde_json::from_value(json!({"nodes": [
            {"nodeId": "n1", "displayName": "pi", "connected": true, "commands": ["camera.snap"],
             "pendingCommands": ["system.run"]},
            {"nodeId": "n2"}]}))
        .unwrap();
        let text = node_list(&n);
        assert!(
            text.contains("connected  commands: camera.snap  awaiting approval: system.run"),
            "{text}"
        );
        assert!(text.contains("n2  -"), "{text}");
        assert!(text.contains("offline"), "{text}");
    }
}
