//! Binding the listeners ([`crate::listeners`] accepts on them), the tick timer, periodic
//! health refresh, and graceful shutdown.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Bind, Config, ConfigError};
use crate::devices::{DeviceStore, DeviceStoreError};
use crate::hub::Hub;
use crate::listeners;
use crate::tailscale::ingress::Ingress;

/// Errors starting or running the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration cannot be used (e.g. `bind = "tailnet"` with no tailnet address).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust store cannot be opened.
    #[error(transparent)]
    Devices(#[from] DeviceStoreError),
    /// The listening socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address and port asked for.
        addr: SocketAddr,
        /// What the OS said (`EADDRINUSE`, …).
        source: std::io::Error,
    },
    /// The state directory cannot be created (0700).
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        /// The state directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The agent's session store cannot be opened.
    #[error(transparent)]
    Sessions(#[from] pincer_agent::store::StoreError),
    /// A channel's configuration or state is wrong.
    #[error(transparent)]
    Channels(#[from] pincer_channels::ChannelError),
    /// `[tls]` is on and its certificate cannot be loaded or made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A bound, not yet running gateway.
pub struct Gateway {
    hub: Arc<Hub>,
    /// The first address bound: what `listening on` prints.
    local_addr: SocketAddr,
    /// Listeners of the port that are not the tailnet one.
    ordinary: Vec<TcpListener>,
    /// `bind = "tailnet"`: how its address stood at start.
    tailnet: TailnetStart,
    /// `[tailscale] serve`: the loopback listener the Serve route points at.
    serve: Option<TcpListener>,
}

/// The tailnet address of `bind = "tailnet"` at start.
enum TailnetStart {
    /// Another bind.
    Off,
    /// No address yet: the watcher binds it when it comes.
    Waiting,
    /// Bound to this address.
    Bound(IpAddr, TcpListener),
}

/// Health is recomputed this often (a `health` event goes out when it changed).
const HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// How often the heap's freed memory is handed back to the kernel (glibc builds; see
/// [`pincer_os::release_free_memory`]).
const TRIM_PERIOD: Duration = Duration::from_secs(5);
/// File descriptors kept for everything but client sockets (listener, state files, logs).
const FD_RESERVE: usize = 64;
/// How long shutdown waits for sockets to close after sending `shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

impl Gateway {
    /// Opens the state and binds the listeners.
    pub async fn bind(mut config: Config) -> Result<Gateway, GatewayError> {
        pincer_os::ensure_private_dir(&config.state_dir).map_err(|source| {
            GatewayError::StateDir {
                path: config.state_dir.clone(),
                source,
            }
        })?;
        let devices = DeviceStore::open(&config.state_dir)?;
        // A socket per connection and per unauthenticated socket, plus the state files and the
        // listener: past the limit, accept would fail instead of answering 503.
        let l = &config.limits;
        let want = (l.max_connections + l.max_preauth_total + FD_RESERVE) as u64;
        match pincer_os::raise_nofile(want) {
            Some(have) if have < want => tracing::warn!(
                open_files = have,
                wanted = want,
                "the open-file limit is below max_connections; raise LimitNOFILE (or lower max_connections)"
            ),
            _ => {}
        }
        // `tailnet` with no tailnet address yet: loopback now, the tailnet address once it
        // is there (the reference falls back to loopback too, but never adds it).
        let tailnet_now = match config.bind {
            Bind::Tailnet => Some(crate::config::tailnet_address()),
            _ => None,
        };
        let first_ip = match tailnet_now {
            Some(found) => found.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            None => config.bind.resolve()?,
        };
        let first = listeners::bind(SocketAddr::new(first_ip, config.port)).await?;
        // With port 0 the kernel chose: advertise the real one, and use it everywhere.
        if let Ok(bound) = first.local_addr() {
            config.port = bound.port();
        }
        let port = config.port;
        let (tailnet, mut ordinary) = match tailnet_now {
            Some(Some(ip)) => (TailnetStart::Bound(ip, first), Vec::new()),
            Some(None) => (TailnetStart::Waiting, vec![first]),
            None => (TailnetStart::Off, vec![first]),
        };
        if let Some(lo) = listeners::loopback_beside(first_ip) {
            ordinary.push(listeners::bind(SocketAddr::new(lo, port)).await?);
        }
        let serve = match config.tailscale.serve {
            true => {
                Some(listeners::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?)
            }
            false => None,
        };
        let tls = match config.tls.enabled {
            true => Some(crate::tls::Tls::load(&config.tls, &config.state_dir)?),
            false => None,
        };
        let hub = Arc::new(Hub::new(config, devices));
        if let Some(tls) = tls {
            tracing::info!(
                fingerprint = %tls.fingerprint(),
                certificate = %tls.source.display(),
                generated = tls.generated,
                "TLS on: clients pin this SHA-256 (--tls-fingerprint, gateway.remote.tlsFingerprint)"
            );
            let _ = hub.tls.set(tls);
        }
        match &tailnet {
            TailnetStart::Bound(ip, _) => {
                tracing::info!(address = %ip, "bind = tailnet: listening on the tailnet address and on 127.0.0.1");
                hub.tailscale.update(|r| r.listening = Some(*ip));
            }
            TailnetStart::Waiting => {
                let why =
                    crate::tailscale::Tailscale::why_no_address(&hub.tailscale.refresh().await);
                tracing::warn!(reason = %why, "bind = tailnet, but no tailnet address yet: listening on 127.0.0.1 until one comes up");
                hub.tailscale.update(|r| r.why_not = Some(why));
            }
            TailnetStart::Off => {}
        }
        crate::agent_host::attach(&hub)?;
        Ok(Gateway {
            hub,
            local_addr: SocketAddr::new(first_ip, port),
            ordinary,
            tailnet,
            serve,
        })
    }

    /// The first address bound (useful with port 0): the tailnet address with `bind =
    /// "tailnet"` when it was there at start, else the configured one (or loopback).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// The Serve listener's address, with `[tailscale] serve`.
    pub fn serve_addr(&self) -> Option<SocketAddr> {
        self.serve.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The hub this gateway serves from.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves, then says `shutdown` to every client, closes their
    /// sockets with 1012 and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let hub = self.hub.clone();
        let tick_hub = hub.clone();
        let ticker = tokio::spawn(async move {
            let period = Duration::from_millis(tick_hub.config.limits.tick_interval_ms);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_health = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                tick_hub.tick();
                if last_health.elapsed() >= HEALTH_REFRESH {
                    last_health = tokio::time::Instant::now();
                    tick_hub.refresh_health(false);
                }
            }
        });
        let presence_hub = hub.clone();
        let presence = tokio::spawn(async move { presence_hub.flush_presence().await });
        let scheduler = hub
            .agent
            .get()
            .cloned()
            .map(|a| tokio::spawn(pincer_agent::cron::schedule(a)));
        if let Some(c) = hub.channels.get() {
            c.spawn();
        }
        let trimmer = tokio::spawn(async {
            let mut every = tokio::time::interval(TRIM_PERIOD);
            loop {
                every.tick().await;
                pincer_os::release_free_memory();
            }
        });
        hub.refresh_health(false);
        let port = hub.config.port;
        let mut accepting: Vec<listeners::Task> = self
            .ordinary
            .into_iter()
            .map(|l| listeners::accept(hub.clone(), l, Ingress::Ordinary))
            .collect();
        let watch = |current| {
            listeners::Task(tokio::spawn(listeners::watch_tailnet(
                hub.clone(),
                port,
                current,
            )))
        };
        match self.tailnet {
            TailnetStart::Off => {}
            TailnetStart::Waiting => accepting.push(watch(None)),
            TailnetStart::Bound(ip, l) => {
                let accepting_there = listeners::accept(hub.clone(), l, Ingress::Ordinary);
                accepting.push(watch(Some((ip, accepting_there))));
            }
        }
        if let Some(l) = self.serve {
            if let Ok(backend) = l.local_addr() {
                accepting.push(listeners::Task(tokio::spawn(
                    crate::tailscale::serve::keep(hub.clone(), backend),
                )));
            }
            accepting.push(listeners::accept(hub.clone(), l, Ingress::Serve));
        }
        shutdown.await;
        drop(accepting);
        ticker.abort();
        presence.abort();
        trimmer.abort();
        if let Some(s) = scheduler {
            s.abort();
        }
        tracing::info!(connections = hub.connection_count(), "shutting down");
        hub.shutdown("gateway stopping", None);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if hub.tailscale.report().serve_url.is_some() {
            match crate::tailscale::serve::disable(&hub.config.tailscale).await {
                Ok(()) => tracing::info!("Tailscale Serve route cleared"),
                Err(e) => tracing::warn!(error = %e, "could not clear the Tailscale Serve route"),
            }
        }
    }
}
