//! How the reference OpenClaw gateway runs headless and self-contained here: its config file
//! and environment. Shared by the interop tests (support/openclaw.rs) and pincer-bench.

use std::ffi::OsString;
use std::path::Path;

use serde_json::{json, Value};

/// `openclaw.json` for a gateway on loopback `port` with token auth, without update checks,
/// telemetry, mDNS or Tailscale; with `tls`, on `wss://` with a self-signed certificate it
/// generates itself (under `<home>/state/gateway/tls/`).
pub fn config(port: u16, token: &str, tls: bool) -> Value {
    let mut config = json!({
        "gateway": { "mode": "local", "port": port, "bind": "loopback",
                     "auth": { "mode": "token", "token": token }, "tailscale": { "mode": "off" } },
        "update": { "checkOnStart": false },
        "telemetry": { "enabled": false },
        "discovery": { "mdns": { "mode": "off" } }
    });
    if tls {
        config["gateway"]["tls"] = json!({ "enabled": true, "autoGenerate": true });
    }
    config
}

/// The environment for `openclaw` with everything under `home`: its state, `openclaw.json`
/// (written by the caller), no Bonjour, respawn, channels, auto-update, tracking or colours.
pub fn env(home: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("HOME", home.into()),
        ("OPENCLAW_STATE_DIR", home.join("state").into()),
        ("OPENCLAW_CONFIG_PATH", home.join("openclaw.json").into()),
        ("OPENCLAW_DISABLE_BONJOUR", "1".into()),
        ("OPENCLAW_NO_RESPAWN", "1".into()),
        ("OPENCLAW_SKIP_CHANNELS", "1".into()),
        ("OPENCLAW_NO_AUTO_UPDATE", "1".into()),
        ("DO_NOT_TRACK", "1".into()),
        ("NO_COLOR", "1".into()),
    ]
}
