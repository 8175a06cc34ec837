//! pincer-gateway on a real tailnet (headscale + tailscaled in namespaces of our own,
//! `tests/support/tailnet.rs`), three hosts: "pi" runs the gateway with `bind = "tailnet"`,
//! "garden" a pincer-node, "laptop" the operator's CLI (ours and the real OpenClaw one).
//!
//! * The gateway started before `tailscaled` listens on loopback, says why in `status`, and
//!   adds the tailnet address once the daemon is up.
//! * Over the tailnet it answers (a new remote device is asked to pair; approved, the real
//!   OpenClaw CLI calls `health`); the same port on the LAN address refuses the connection.
//! * A node pairs with a setup code over the tailnet and answers an invoke; its `tailscaled`
//!   killed and restarted, the node comes back by itself.

#[path = "../../tests/support/tailnet.rs"]
mod tailnet;

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::openclaw::{self, Proc};
use support::{Gateway, BIN, TOKEN};

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

/// `pincer-gateway ARGS --token … --state-dir …` on `host` against the gateway at `url`.
fn op(host: &tailnet::Host, state: &Path, url: &str, args: &[&str]) -> Output {
    host.command(BIN)
        .args(args)
        .args(["--url", url, "--token", TOKEN, "--state-dir"])
        .arg(state)
        .env("RUST_LOG", "warn")
        .output()
        .expect("pincer-gateway CLI")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_tailnet_gateway_serves_its_tailnet_and_survives_daemons_restarting() {
    let resolv = std::fs::read("/etc/resolv.conf").ok();
    let Some(mut net) = tailnet::Tailnet::start(std::process::id() + 3) else {
        return;
    };
    let mut pi = net.host("pi");
    let mut garden = net.host("garden");
    let laptop = net.host("laptop");

    // Boards boot in any order: the gateway comes up before pi's tailscaled.
    pi.kill_daemon();
    let cfg = net.dir.join("gateway.toml");
    // Ticks every second: a node whose path died notices within two.
    std::fs::write(
        &cfg,
        format!(
            "[limits]\ntick_interval_ms = 1000\n[tailscale]\nsocket = \"{}\"\n",
            pi.socket.display()
        ),
    )
    .expect("gateway.toml");
    let gw = Gateway::start_command(
        pi.command(BIN),
        &net.dir.join("gw"),
        TOKEN,
        &["--bind", "tailnet", "--config", cfg.to_str().expect("utf8")],
    );
    let port = gw.port;
    assert!(
        gw.listening.starts_with("ws://127.0.0.1:"),
        "no tailnet yet, so loopback first: {}",
        gw.listening
    );
    let local = format!("ws://127.0.0.1:{port}");
    let pi_state = net.dir.join("pi-cli");
    let status = json(&op(&pi, &pi_state, &local, &["call", "status"]));
    let t = &status["gateway"]["tailnet"];
    assert!(t["listening"].is_null(), "{status}");
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("tailscaled is not running")),
        "status says why: {status}"
    );

    net.start_daemon(&mut pi);
    let tailnet_url = format!("ws://{}:{port}", pi.tailnet_ip);
    wait_for("the gateway on its tailnet address", 60, || {
        let s = json(&op(&pi, &pi_state, &local, &["call", "status"]));
        (s["gateway"]["tailnet"]["listening"] == format!("{}:{port}", pi.tailnet_ip)).then_some(())
    });
    // What the daemon says is looked at now and then: wait for it.
    let status = wait_for("status with the daemon running", 60, || {
        let s = json(&op(&pi, &pi_state, &local, &["call", "status"]));
        (s["gateway"]["tailnet"]["daemon"]["running"] == true).then_some(s)
    });
    let daemon = &status["gateway"]["tailnet"]["daemon"];
    assert_eq!(daemon["tun"], true, "{status}");
    assert!(
        daemon["login"]
            .as_str()
            .is_some_and(|l| l.starts_with("pincer")),
        "{status}"
    );
    net.wait_path(&laptop, &pi);

    // The LAN address refuses the port; the tailnet address takes it.
    assert!(tailnet::reachable_from(
        &laptop.ns,
        &format!("{}:{port}", pi.tailnet_ip)
    ));
    assert!(!tailnet::reachable_from(
        &laptop.ns,
        &format!("{}:{port}", pi.lan_ip)
    ));

    // The operator on the laptop: a stranger first, approved on the board, then served.
    let laptop_state = net.dir.join("laptop-cli");
    let first = op(&laptop, &laptop_state, &tailnet_url, &["call", "health"]);
    assert!(
        text(&first).contains("pairing required"),
        "{}",
        text(&first)
    );
    approve_all(&pi, &pi_state, &local);
    let health = json(&op(
        &laptop,
        &laptop_state,
        &tailnet_url,
        &["call", "health"],
    ));
    assert_eq!(health["ok"], true, "{health}");

    // The real OpenClaw CLI from the laptop, over the tailnet, paired the same way.
    if let Some(r) = openclaw::reference() {
        let home = net.dir.join("laptop-openclaw");
        let args = [
            "gateway",
            "call",
            "health",
            "--json",
            "--url",
            &tailnet_url,
            "--token",
            TOKEN,
        ];
        let o = r.run_in(Some(&laptop.ns), &home, &args);
        if !o.status.success() {
            assert!(
                text(&o).contains("pairing required"),
                "{}",
                openclaw::show(&o)
            );
            approve_all(&pi, &pi_state, &local);
        }
        let o = r.run_in(Some(&laptop.ns), &home, &args);
        let v = openclaw::json_of(&o);
        assert_eq!(v["ok"], true, "{v}");
    }

    // A node in the garden pairs with a setup code over the tailnet.
    let code = json(&op(
        &pi,
        &pi_state,
        &local,
        &["devices", "setup-code", "--json"],
    ));
    assert_eq!(
        code["url"], tailnet_url,
        "the code names the tailnet address: {code}"
    );
    let node_state = net.dir.join("garden-node");
    let _node = Proc(
        garden
            .command(support::node_bin::pincer_node_bin())
            .args([
                "run",
                "--caps",
                "system",
                "--name",
                "garden",
                "--setup-code",
            ])
            .arg(code["setupCode"].as_str().expect("setupCode"))
            .arg("--state-dir")
            .arg(&node_state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(net.dir.join("garden-node.log")).expect("log"))
            .spawn()
            .expect("pincer-node"),
    );
    let connected_at = |pi: &tailnet::Host| -> Option<u64> {
        let v = json(&op(pi, &pi_state, &local, &["nodes", "list", "--json"]));
        v["nodes"].as_array()?.iter().find_map(|n| {
            (n["displayName"] == "garden" && n["connected"] == true)
                .then(|| n["connectedAtMs"].as_u64().unwrap_or(1))
        })
    };
    let first_at = wait_for("the garden node listed as connected", 60, || {
        connected_at(&pi)
    });
    approve_surfaces(&pi, &pi_state, &local);
    let which = |pi: &tailnet::Host| {
        op(
            pi,
            &pi_state,
            &local,
            &[
                "nodes",
                "invoke",
                "garden",
                "system.which",
                "--params",
                r#"{"bins":["sh"]}"#,
            ],
        )
    };
    let o = which(&pi);
    assert!(
        o.status.success() && text(&o).contains("/sh"),
        "{}",
        text(&o)
    );

    // The node's tailscaled dies and comes back: the node reconnects by itself.
    garden.kill_daemon();
    // Its path is gone: the node's link notices the missing ticks and retries.
    wait_for("the node to notice its link gone", 60, || {
        std::fs::read_to_string(net.dir.join("garden-node.log"))
            .is_ok_and(|l| l.contains("tick timeout"))
            .then_some(())
    });
    net.start_daemon(&mut garden);
    wait_for("the garden node back", 120, || {
        connected_at(&pi).filter(|at| *at != first_at)
    });
    let o = which(&pi);
    assert!(
        o.status.success() && text(&o).contains("/sh"),
        "{}",
        text(&o)
    );
    drop(gw);
    // Four daemons ran in namespaces sharing this machine's /etc: its DNS is untouched.
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        resolv,
        "the host's resolv.conf changed"
    );
}

/// Approves every pending device request on the board's gateway.
fn approve_all(pi: &tailnet::Host, state: &Path, url: &str) {
    let v = json(&op(pi, state, url, &["devices", "list", "--json"]));
    let ids: Vec<String> = v["pending"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["requestId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(!ids.is_empty(), "nothing pending: {v}");
    for id in ids {
        let o = op(pi, state, url, &["devices", "approve", &id]);
        assert!(o.status.success(), "approve {id}: {}", text(&o));
    }
}

/// Approves the command surfaces nodes asked for (a node paired by setup code still has its
/// commands approved by an operator).
fn approve_surfaces(pi: &tailnet::Host, state: &Path, url: &str) {
    let v = json(&op(pi, state, url, &["nodes", "pending", "--json"]));
    let Some(list) = v["pending"].as_array().or_else(|| v.as_array()) else {
        return;
    };
    for p in list {
        if let Some(id) = p["requestId"].as_str() {
            let o = op(pi, state, url, &["nodes", "approve", id]);
            assert!(o.status.success(), "approve surface {id}: {}", text(&o));
        }
    }
}
