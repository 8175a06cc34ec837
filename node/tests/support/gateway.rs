//! pincer-gateway in the test's own process (its library, on a real socket), for the node's
//! end-to-end tests: `Gw::start(Overrides { .. })`, `gw.port`, `gw.stop().await`.

use std::time::Duration;

use pincer_gateway::config::{Config, Overrides};
use pincer_gateway::Gateway;
use tokio::sync::oneshot;

/// A running gateway. Dropping the handle stops it too (its stop channel closes).
pub struct Gw {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    /// Resolves `overrides` like the binary does (a `port` of `Some(0)` takes any free port).
    pub async fn start(overrides: Overrides) -> Gw {
        Gw::start_with(overrides, |_| {}).await
    }

    /// With the resolved configuration adjusted by `tweak` first.
    pub async fn start_with(overrides: Overrides, tweak: impl FnOnce(&mut Config)) -> Gw {
        let mut cfg = Config::resolve(overrides).expect("gateway config");
        tweak(&mut cfg);
        let gw = Gateway::bind(cfg).await.expect("bind the gateway");
        let port = gw.local_addr().expect("gateway address").port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gw.run(async move {
            let _ = rx.await;
        }));
        Gw {
            port,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops it and waits (up to 5 s) for it to close its connections.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
