//! Heavy traffic both ways on one link: invoke params of several megabytes from the gateway to
//! the node while results of several megabytes go the other way. When either side wrote inside
//! the loop that also reads, both TCP send queues filled and the link was dead for good.

use std::sync::Arc;
use std::time::Duration;

use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};
use pincer_node::commands::{Command, CommandFuture, Registry};
use serde_json::{json, Value};

mod support;
use support::gateway::Gw;

const TOKEN: &str = "backpressure-token";
/// Bytes of each invoke's params, and of each result.
const BIG: usize = 7_500_000;
const INVOKES: usize = 6;

/// Answers with a result as large as its params.
struct Mirror;
impl Command for Mirror {
    fn run(&self, params: Value) -> CommandFuture {
        Box::pin(async move {
            let n = params["data"].as_str().map_or(0, str::len);
            Ok(json!({ "data": "r".repeat(n) }).into())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_frames_both_ways_at_once_complete() {
    let dir = std::env::temp_dir().join(format!("pincer-backpressure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = Gw::start_with(
        Overrides {
            port: Some(0),
            state_dir: Some(dir.join("gw")),
            token: Some(TOKEN.into()),
            ..Default::default()
        },
        |cfg| cfg.node_allow.push("test.mirror".into()),
    )
    .await;
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let state = dir.join("node");
    let mut registry = Registry::default();
    registry.add("test.mirror", Arc::new(Mirror));
    let node = support::node::spawn(
        pincer_node::config::Overrides {
            gateway: Some(url.clone()),
            token: Some(TOKEN.into()),
            caps: Some(String::new()),
            name: Some("mirror".into()),
            state_dir: Some(state.clone()),
            ..Default::default()
        },
        registry,
    );
    let mut op = CallOptions::new(url, dir.join("operator"));
    op.token = Some(TOKEN.into());
    op.timeout = Duration::from_secs(120);
    // Waits for the node to be listed; the bound only turns a node that never connects into a
    // failure instead of a hang.
    let node_id = support::node::listed(&op).await;

    let data = "p".repeat(BIG);
    let calls: Vec<_> = (0..INVOKES)
        .map(|i| {
            let (op, node_id, data) = (op.clone(), node_id.clone(), data.clone());
            tokio::spawn(async move {
                call(
                    &op,
                    "node.invoke",
                    json!({ "nodeId": node_id, "command": "test.mirror", "params": { "data": data },
                            "timeoutMs": 110_000, "idempotencyKey": format!("big-{i}") }),
                )
                .await
            })
        })
        .collect();
    for c in calls {
        let v = c.await.expect("task").expect("invoke answered");
        assert_eq!(v["payload"]["data"].as_str().map(str::len), Some(BIG));
    }
    // The link is still alive afterwards.
    let v = call(
        &op,
        "node.invoke",
        json!({ "nodeId": node_id, "command": "test.mirror", "params": { "data": "x" }, "idempotencyKey": "small" }),
    )
    .await
    .expect("small invoke after the big ones");
    assert_eq!(v["payload"]["data"], "r");

    node.stop().await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
