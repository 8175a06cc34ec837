//! The real OpenClaw tools against pincer-gateway's trust model (reference §3.4 device pairing,
//! §3.5 node pairing, §7 the headless node host): the operator CLI's `devices list|approve`
//! and `nodes pending|approve|list|invoke`, and the real node host (`openclaw node run`)
//! connecting, being approved and answering invokes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::openclaw::{json_of, reference, show, Proc, TOKEN};
use crate::support::BIN;

fn pincer(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("pincer cli")
}

#[test]
fn openclaw_cli_and_node_host_work_with_pincer_gateway() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let root = std::env::temp_dir().join(format!("pincer-octrust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("mkdir");
    let gw_log = root.join("gateway.log");
    let mut child = Command::new(BIN)
        .args(["run", "--port", "0", "--token", TOKEN, "--state-dir"])
        .arg(root.join("gw"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&gw_log).expect("log"))
        .spawn()
        .expect("spawn gateway");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let _gw = Proc(child);
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let url = format!("ws://127.0.0.1:{port}");
    let home = root.join("operator");
    std::fs::create_dir_all(&home).expect("mkdir");

    // A stranger behind an untrusted proxy asks to pair.
    let stranger = root.join("stranger");
    let s = stranger.to_str().expect("utf8");
    let o = pincer(&[
        "call",
        "health",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--state-dir",
        s,
        "--header",
        "X-Forwarded-For: 192.0.2.44",
    ]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("pairing required"),
        "{}",
        show(&o)
    );

    // `openclaw devices list` shows it; `openclaw devices approve` lets it in.
    let list = json_of(&r.cli(&home, &url, &["devices", "list", "--json"]));
    let pending = list["pending"].as_array().expect("pending array");
    assert_eq!(pending.len(), 1, "{list}");
    let request_id = pending[0]["requestId"]
        .as_str()
        .expect("requestId")
        .to_owned();
    let o = r.cli(&home, &url, &["devices", "approve", &request_id]);
    assert!(o.status.success(), "{}", show(&o));
    let o = pincer(&[
        "call",
        "health",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--state-dir",
        s,
        "--header",
        "X-Forwarded-For: 192.0.2.44",
    ]);
    assert!(
        o.status.success(),
        "approved stranger still refused: {}",
        show(&o)
    );

    // The real headless node host connects (paired silently on loopback).
    let node_home = root.join("nodehost");
    std::fs::create_dir_all(&node_home).expect("mkdir");
    let node_log = root.join("nodehost.log");
    let host = r
        .command(&node_home)
        .args([
            "node",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .stdout(std::fs::File::create(&node_log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node host");
    let _host = Proc(host);
    let deadline = Instant::now() + Duration::from_secs(45);
    let node_id = loop {
        let o = pincer(&[
            "nodes",
            "list",
            "--json",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--state-dir",
            home.to_str().expect("utf8"),
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if let Some(n) = v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["connected"] == Value::Bool(true)))
        {
            break n["nodeId"].as_str().expect("nodeId").to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "node host never connected; its log:\n{}",
            std::fs::read_to_string(&node_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Its exec surface waits for approval; `openclaw nodes pending|approve` handle it.
    let pending = json_of(&r.cli(&home, &url, &["nodes", "pending", "--json"]));
    // The CLI prints the pending array itself.
    let req = pending
        .as_array()
        .or(pending["pending"].as_array())
        .and_then(|a| {
            a.iter()
                .find(|p| p["nodeId"].as_str() == Some(node_id.as_str()))
        })
        .unwrap_or_else(|| panic!("no pending surface for {node_id}: {pending}"));
    let req_id = req["requestId"].as_str().expect("requestId").to_owned();
    let o = r.cli(&home, &url, &["nodes", "approve", &req_id]);
    assert!(o.status.success(), "{}", show(&o));
    let listed = json_of(&r.cli(&home, &url, &["nodes", "list", "--json"]));
    assert!(
        listed.to_string().contains(&node_id),
        "openclaw nodes list lacks the node: {listed}"
    );
    let d = json_of(&pincer(&[
        "nodes",
        "describe",
        &node_id,
        "--json",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--state-dir",
        home.to_str().expect("utf8"),
    ]));
    let cmds: Vec<&str> = d["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cmds.contains(&"system.run") && cmds.contains(&"system.which"),
        "approved surface not effective: {cmds:?}"
    );

    // Invokes from both CLIs reach the real node host.
    let v = json_of(&r.cli(
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
    ));
    assert!(
        v["payload"]["bins"]["sh"]
            .as_str()
            .is_some_and(|p| p.ends_with("/sh")),
        "{v}"
    );
    let v = json_of(&pincer(&[
        "nodes",
        "invoke",
        &node_id,
        "system.which",
        "--params",
        r#"{"bins":["ls"]}"#,
        "--json",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--state-dir",
        home.to_str().expect("utf8"),
    ]));
    assert!(
        v["bins"]["ls"].as_str().is_some_and(|p| p.ends_with("/ls")),
        "{v}"
    );

    // The node host's own requests were answered: it connected once and did not loop.
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(&gw_log).unwrap_or_default();
    let node_connects = log
        .lines()
        .filter(|l| {
            l.contains("connected") && l.contains("node-host") && !l.contains("disconnected")
        })
        .count();
    assert_eq!(
        node_connects, 1,
        "node host reconnected; gateway log:\n{log}"
    );
    let host_log = std::fs::read_to_string(&node_log).unwrap_or_default();
    assert!(
        !host_log.contains("invalid"),
        "node host saw protocol errors:\n{host_log}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
