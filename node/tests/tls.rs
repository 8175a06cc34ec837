//! pincer-node joins a gateway over `wss://` with the gateway's certificate pinned
//! (`--tls-fingerprint`), and answers an invoke through it.

use std::sync::Arc;
use std::time::Duration;

use pincer_client::identity::{Identity, IdentityFiles};
use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};
use pincer_node::commands::{Command, CommandFuture, Registry};
use pincer_node::config::NodeConfig;
use pincer_node::invoke::Dispatcher;
use pincer_node::link::Node;
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
    let cfg = NodeConfig::resolve(
        pincer_node::config::Overrides {
            gateway: Some(url.clone()),
            token: Some(TOKEN.into()),
            tls_fingerprint: Some(format!("sha256:{pin}")),
            caps: Some(String::new()),
            name: Some("tls-node".into()),
            state_dir: Some(state.clone()),
            ..Default::default()
        },
        pincer_node::commands::AVAILABLE_CAPS,
    )
    .expect("node config");
    let mut registry = Registry::default();
    registry.add("test.echo", Arc::new(Echo));
    let node = Node::new(
        cfg,
        Identity::load_or_create(IdentityFiles::node(&state)).expect("identity"),
        Arc::new(Dispatcher::new(registry)),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(async move {
        node.run(async move {
            let _ = stop_rx.await;
        })
        .await
    });

    let mut op = CallOptions::new(url, dir.join("operator"));
    op.token = Some(TOKEN.into());
    op.tls_fingerprint = Some(pin);
    op.timeout = Duration::from_secs(20);
    // The bound only turns a node that never connects into a failure instead of a hang.
    let listed_by = std::time::Instant::now() + Duration::from_secs(60);
    let node_id = loop {
        assert!(
            std::time::Instant::now() < listed_by,
            "the node was not listed within 60 s"
        );
        let v = call(&op, "node.list", json!({})).await.expect("node.list");
        if let Some(id) = v["nodes"][0]["nodeId"]
            .as_str()
            .filter(|_| v["nodes"][0]["connected"] == true)
        {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = call(
        &op,
        "node.invoke",
        json!({ "nodeId": node_id, "command": "test.echo", "params": { "over": "wss" },
                "idempotencyKey": "tls-1" }),
    )
    .await
    .expect("invoke over wss");
    assert_eq!(v["payload"]["over"], "wss");

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), node_task).await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
