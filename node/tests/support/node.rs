//! A pincer-node in the test's own process (its library), with a registry of the test's
//! commands, and the operator-side wait for it to be listed as connected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pincer_client::identity::{Identity, IdentityFiles};
use pincer_gateway::operator::call::{call, CallOptions};
use pincer_node::commands::Registry;
use pincer_node::config::{NodeConfig, Overrides};
use pincer_node::invoke::Dispatcher;
use pincer_node::link::Node;
use serde_json::json;
use tokio::sync::oneshot;

/// A running node; [`RunningNode::stop`] (or dropping it) ends its link.
pub struct RunningNode {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Resolves `overrides` (its `state_dir` must be set) and runs the node serving `registry`.
pub fn spawn(overrides: Overrides, registry: Registry) -> RunningNode {
    let state = overrides.state_dir.clone().expect("a state dir");
    let cfg =
        NodeConfig::resolve(overrides, pincer_node::commands::AVAILABLE_CAPS).expect("node config");
    let node = Node::new(
        cfg,
        Identity::load_or_create(IdentityFiles::node(&state)).expect("identity"),
        Arc::new(Dispatcher::new(registry)),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = node
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    RunningNode {
        stop: Some(tx),
        task: Some(task),
    }
}

impl RunningNode {
    /// Ends the link and waits (up to 5 s) for the node to stop.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// The id of the first node `node.list` shows connected. The 60 s bound only turns a node
/// that never connects into a failure instead of a hang.
pub async fn listed(op: &CallOptions) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < until,
            "the node was not listed within 60 s"
        );
        let v = call(op, "node.list", json!({})).await.expect("node.list");
        if let Some(id) = v["nodes"][0]["nodeId"]
            .as_str()
            .filter(|_| v["nodes"][0]["connected"] == true)
        {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
