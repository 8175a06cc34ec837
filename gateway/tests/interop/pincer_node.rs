//! pincer-node against the real OpenClaw gateway (reference "Minimum for interop" A, §6 Nodes,
//! §9 TLS): it connects and is paired on loopback, its surface is approved with the real CLI
//! (`openclaw nodes approve`) and `openclaw nodes invoke … system.which` returns the path; over
//! `wss://` it connects to the gateway's self-signed certificate only when pinned.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cdp::{Browser, Options, Page};
use crate::support::node_bin::pincer_node_bin;
use crate::support::openclaw::{free_port, json_of, reference, show, Proc, TOKEN};

#[test]
fn pincer_node_serves_the_real_openclaw_gateway() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let node_bin = pincer_node_bin();
    let root = std::env::temp_dir().join(format!("pincer-node-oc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let port = free_port();
    let home = root.join("openclaw");
    let _gw = r.start_gateway(&home, port);
    let url = format!("ws://127.0.0.1:{port}");
    // A browser is on the gateway's own Control UI: its presence entry carries keys Pincer does
    // not model (`user`, `onlineSince`, `lastActivityAt`, …) and every hello-ok lists it.
    let browser = Browser::launch(Options::default());
    let _page = browser.as_ref().map(|b| control_ui_connected(b, port));
    let node_log = root.join("node.log");
    let _node = Proc(
        Command::new(node_bin)
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
    // Pincer's operator CLI reads the same hello-ok.
    let o = Command::new(env!("CARGO_BIN_EXE_pincer-gateway"))
        .args([
            "call",
            "system-presence",
            "--json",
            "--url",
            &url,
            "--token",
            TOKEN,
        ])
        .arg("--state-dir")
        .arg(root.join("cli"))
        .output()
        .expect("run pincer-gateway call");
    assert!(o.status.success(), "{}", show(&o));
    if browser.is_some() {
        let listed = String::from_utf8_lossy(&o.stdout);
        assert!(
            listed.contains("openclaw-control-ui"),
            "the browser is in the presence list: {listed}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Opens the reference's own Control UI on `port` (token in the fragment) and waits until its
/// WebSocket got `hello-ok`. Keep the page to keep the browser connected.
fn control_ui_connected(browser: &Browser, port: u16) -> Page {
    let page = browser.page();
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": "(() => { const W = window.WebSocket; window.WebSocket = class extends W { \
            constructor(...a) { super(...a); this.addEventListener('message', (e) => { \
            if (typeof e.data === 'string' && e.data.includes('\"hello-ok\"')) window.__connected = true; }); } }; })();" }),
    );
    page.goto(&format!("http://127.0.0.1:{port}/#token={TOKEN}"));
    page.wait_for("window.__connected === true", Duration::from_secs(60));
    page
}

/// The gateway's certificate, from the PEM file OpenClaw generated, as DER.
fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = vec![0u8; b64.len()];
    let n = pincer_protocol::base64url::decode_into(&b64, &mut out).expect("PEM base64");
    out.truncate(n);
    out
}

#[test]
fn pinned_wss_to_the_real_openclaw_gateway() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let node_bin = pincer_node_bin();
    let root = std::env::temp_dir().join(format!("pincer-node-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let port = free_port();
    let home = root.join("openclaw");
    let _gw = r.start_gateway_with(&home, port, true);
    let cert = std::fs::read_to_string(home.join("state/gateway/tls/gateway-cert.pem"))
        .expect("OpenClaw's generated certificate");
    // The pin is the certificate's SHA-256, computed here, not by pincer-node.
    let pin: String = Sha256::digest(pem_to_der(&cert))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("wss://127.0.0.1:{port}");
    let run = |pin: Option<&str>, tag: &str| {
        let log = root.join(format!("{tag}.log"));
        let mut cmd = Command::new(node_bin);
        cmd.args(["run", "--gateway", &url, "--token", TOKEN, "--state-dir"])
            .arg(root.join(tag));
        if let Some(p) = pin {
            cmd.args(["--tls-fingerprint", p]);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        (Proc(child), log)
    };
    let wait_log = |log: &std::path::Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{needle:?} not in log:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The right pin connects (over TLS, to a self-signed certificate)…
    let (_ok, ok_log) = run(Some(&format!("sha256:{pin}")), "pinned");
    wait_log(&ok_log, "connected gateway=wss://");
    // …a wrong pin is refused with the fingerprint it saw, and retried, never connected…
    let (_bad, bad_log) = run(Some(&"0".repeat(64)), "wrongpin");
    let text = wait_log(&bad_log, "does not match the pin");
    assert!(
        text.contains(&pin) && !text.contains("connected gateway="),
        "{text}"
    );
    // …and without a pin a self-signed certificate is not trusted.
    let (_unpinned, un_log) = run(None, "unpinned");
    let text = wait_log(&un_log, "invalid peer certificate");
    assert!(!text.contains("connected gateway="), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}
