//! pincer-node joins a gateway over `wss://` with the gateway's certificate pinned
//! (`--tls-fingerprint`), and answers an invoke through it.

use std::sync::Arc;
use std::time::Duration;

use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};
use pincer_node::commands::{Command, CommandFuture, Registry};
use serde_json::{json, Value};

mod support;
use support::gateway::Gw;

const TOKEN: &str = "tls-node-token";

struct Echo;
impl Command for Echo {
    fn run(&self, params: Value) -> CommandFuture {
        Box::pin(async move { Ok(params.into()) })
    }
}

/// The SHA-256 of the pair the gateway generated into `state` (its own loader reads it back).
fn pin_of(state: &std::path::Path) -> String {
    let on = pincer_gateway::tls::TlsConfig {
        enabled: true,
        ..Default::default()
    };
    pincer_gateway::tls::Tls::load(&on, state)
        .expect("the generated pair")
        .fingerprint()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_over_wss_with_the_pinned_certificate() {
    let dir = std::env::temp_dir().join(format!("pincer-node-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw_state = dir.join("gw");
    let gw = Gw::start_with(
        Overrides {
            port: Some(0),
            state_dir: Some(gw_state.clone()),
            token: Some(TOKEN.into()),
            ..Default::default()
        },
        |cfg| {
            cfg.tls.enabled = true;
            cfg.node_allow.push("test.echo".into());
        },
    )
    .await;
    let pin = pin_of(&gw_state);
    let url = format!("wss://127.0.0.1:{}", gw.port);
    let state = dir.join("node");
    let mut registry = Registry::default();
    registry.add("test.echo", Arc::new(Echo));
    let node = support::node::spawn(
        pincer_node::config::Overrides {
            gateway: Some(url.clone()),
            token: Some(TOKEN.into()),
            tls_fingerprint: Some(format!("sha256:{pin}")),
            caps: Some(String::new()),
            name: Some("tls-node".into()),
            state_dir: Some(state.clone()),
            ..Default::default()
        },
        registry,
    );
    let mut op = CallOptions::new(url, dir.join("operator"));
    op.token = Some(TOKEN.into());
    op.tls_fingerprint = Some(pin);
    op.timeout = Duration::from_secs(20);
    // The bound only turns a node that never connects into a failure instead of a hang.
    let node_id = support::node::listed(&op).await;
    let v = call(
        &op,
        "node.invoke",
        json!({ "nodeId": node_id, "command": "test.echo", "params": { "over": "wss" },
                "idempotencyKey": "tls-1" }),
    )
    .await
    .expect("invoke over wss");
    assert_eq!(v["payload"]["over"], "wss");

    node.stop().await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
