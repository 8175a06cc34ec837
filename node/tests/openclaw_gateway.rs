//! pincer-node against the real OpenClaw gateway (`openclaw@2026.9.6`): it connects and is
//! paired on loopback, its surface is approved with the real CLI (`openclaw nodes approve`),
//! and `openclaw nodes invoke … system.which` returns the path.
//!
//! Needs `PINCER_OPENCLAW` and `PINCER_NODE` (set by `scripts/test.sh`).

#[path = "../../gateway/tests/support/openclaw.rs"]
mod openclaw;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openclaw::{free_port, json_of, reference, show, Proc, TOKEN};
use serde_json::Value;

#[test]
fn pincer_node_serves_the_real_openclaw_gateway() {
    let Some(r) = reference() else { return };
    let root = std::env::temp_dir().join(format!("pincer-node-oc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let port = free_port();
    let home = root.join("openclaw");
    let _gw = r.start_gateway(&home, port);
    let url = format!("ws://127.0.0.1:{port}");
    let node_log = root.join("node.log");
    let _node = Proc(
        Command::new(env!("CARGO_BIN_EXE_pincer-node"))
            .args([
                "run",
                "--gateway",
                &url,
                "--token",
                TOKEN,
                "--caps",
                "system",
                "--name",
                "pincer-pi",
                "--state-dir",
            ])
            .arg(root.join("node"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&node_log).expect("log"))
            .spawn()
            .expect("spawn pincer-node"),
    );
    // It shows up as connected.
    let deadline = Instant::now() + Duration::from_secs(60);
    let node_id = loop {
        let v = json_of(&r.cli(&home, &url, &["nodes", "status", "--json"]));
        let found = v["nodes"].as_array().and_then(|a| {
            a.iter()
                .find(|n| n["displayName"] == "pincer-pi" && n["connected"] == true)
                .and_then(|n| n["nodeId"].as_str().map(str::to_owned))
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "pincer-node never connected; its log:\n{}",
            std::fs::read_to_string(&node_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(1000));
    };
    // The real gateway holds its command surface for approval; approve it with the real CLI.
    let pending = json_of(&r.cli(&home, &url, &["nodes", "pending", "--json"]));
    let list = pending
        .as_array()
        .or(pending["pending"].as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(req) = list
        .iter()
        .find(|p| p["nodeId"].as_str() == Some(node_id.as_str()))
    {
        let id = req["requestId"].as_str().expect("requestId");
        let o = r.cli(&home, &url, &["nodes", "approve", id]);
        assert!(o.status.success(), "{}", show(&o));
    }
    // Invoke through the real gateway.
    let deadline = Instant::now() + Duration::from_secs(30);
    let v: Value = loop {
        let o = r.cli(
            &home,
            &url,
            &[
                "nodes",
                "invoke",
                "--node",
                &node_id,
                "--command",
                "system.which",
                "--params",
                r#"{"bins":["sh"]}"#,
                "--json",
            ],
        );
        if o.status.success() {
            break json_of(&o);
        }
        assert!(
            Instant::now() < deadline,
            "invoke kept failing: {}\nnode log:\n{}",
            show(&o),
            std::fs::read_to_string(&node_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(1000));
    };
    assert!(
        v["payload"]["bins"]["sh"]
            .as_str()
            .is_some_and(|p| p.ends_with("/sh")),
        "{v}"
    );
    let log = std::fs::read_to_string(&node_log).unwrap_or_default();
    assert_eq!(
        log.matches("connected gateway=").count(),
        1,
        "node reconnected:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
