//! A node on another host (a network namespace): it is refused until an operator approves it,
//! keeps retrying by itself and comes in once approved; when its link drops and returns, it
//! recovers on its own and the gateway never holds two live sessions for it.
//!
//! Needs root and iproute2 (`PINCER_REQUIRE_NETNS=1` makes their absence a failure).

#[path = "../../gateway/tests/support/netns.rs"]
mod netns;
mod support;
use support::gateway::Gw;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};
use serde_json::{json, Value};

const TOKEN: &str = "node-netns-token";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn nodes(o: &CallOptions) -> Vec<Value> {
    call(o, "node.list", json!({}))
        .await
        .ok()
        .and_then(|v| v["nodes"].as_array().cloned())
        .unwrap_or_default()
}

async fn wait_for<F: Fn(&[Value]) -> bool>(
    o: &CallOptions,
    within: Duration,
    what: &str,
    f: F,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let n = nodes(o).await;
        if f(&n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_node_pairs_after_approval_and_survives_a_link_drop() {
    let tag = (std::process::id() + 7) % 60000;
    let Some(ns) = netns::Netns::create(tag) else {
        assert!(
            !netns::required(),
            "network namespaces unavailable (need root and iproute2)"
        );
        eprintln!("skipping: network namespaces unavailable");
        return;
    };
    let dir = std::env::temp_dir().join(format!("pincer-node-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = Gw::start(Overrides {
        bind: Some("lan".into()),
        port: Some(0),
        state_dir: Some(dir.join("gw")),
        token: Some(TOKEN.into()),
        tick_interval_ms: Some(500),
        ..Default::default()
    })
    .await;
    let port = gw.port;
    let mut op = CallOptions::new(format!("ws://127.0.0.1:{port}"), dir.join("operator"));
    op.token = Some(TOKEN.into());

    // The node on the other host: refused, retrying.
    let url = format!("ws://{}:{port}", netns::host_ip(tag));
    let node_state = dir.join("node");
    let _node = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                env!("CARGO_BIN_EXE_pincer-node"),
                "run",
                "--gateway",
                &url,
                "--token",
                TOKEN,
                "--caps",
                "system",
                "--name",
                "far-node",
                "--state-dir",
            ])
            .arg(&node_state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node in namespace"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let request_id = loop {
        let list = call(&op, "device.pair.list", json!({}))
            .await
            .expect("device.pair.list");
        if let Some(id) = list["pending"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(|p| p["requestId"].as_str())
        {
            break id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the remote node never asked to pair"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        nodes(&op).await.iter().all(|n| n["connected"] != true),
        "node connected before approval"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // it keeps retrying meanwhile
    let approved = Instant::now();
    call(
        &op,
        "device.pair.approve",
        json!({ "requestId": request_id }),
    )
    .await
    .expect("approve");
    let list = wait_for(
        &op,
        Duration::from_secs(35),
        "approved node connected",
        |n| n.iter().any(|n| n["connected"] == true),
    )
    .await;
    eprintln!(
        "node connected {} ms after approval",
        approved.elapsed().as_millis()
    );
    let id = list
        .iter()
        .find(|n| n["connected"] == true)
        .and_then(|n| n["nodeId"].as_str())
        .expect("nodeId")
        .to_owned();
    // The gateway lists the node once it sent hello-ok; the node saves the token it carries
    // right after reading it.
    let saved_by = Instant::now() + Duration::from_secs(5);
    while !node_state.join("device-auth.json").exists() {
        assert!(
            Instant::now() < saved_by,
            "node did not keep its device token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The link drops for longer than two tick intervals, then returns.
    ns.link(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ns.link(true);
    let back = Instant::now();
    let up_ms = pincer_gateway::now_ms();
    // A new session (connected after the link returned), by the node's own doing.
    wait_for(
        &op,
        Duration::from_secs(40),
        "a new session after the link returned",
        |n| {
            n.iter().any(|x| {
                x["nodeId"] == id.as_str()
                    && x["connected"] == true
                    && x["connectedAtMs"].as_u64().is_some_and(|t| t >= up_ms)
            })
        },
    )
    .await;
    eprintln!(
        "node back {} ms after the link returned",
        back.elapsed().as_millis()
    );
    // Exactly one live session for it, now and a moment later.
    for _ in 0..2 {
        let n = nodes(&op).await;
        assert_eq!(
            n.iter().filter(|x| x["nodeId"] == id.as_str()).count(),
            1,
            "{n:?}"
        );
        let status = call(&op, "status", json!({})).await.expect("status");
        assert_eq!(
            status["gateway"]["nodes"], 1,
            "gateway holds {} node sessions; nodes: {n:?}",
            status["gateway"]["nodes"]
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let v = call(&op, "node.invoke", json!({ "nodeId": id, "command": "system.which", "params": { "bins": ["sh"] }, "idempotencyKey": "after-flap" }))
        .await
        .expect("invoke after the flap");
    assert!(v["payload"]["bins"]["sh"].is_string());

    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
