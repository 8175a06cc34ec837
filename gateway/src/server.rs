//! Accept loop, per-IP pre-auth budget (HTTP 503 beyond it), the tick timer, periodic health
//! refresh, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::devices::{DeviceStore, DeviceStoreError};
use crate::hub::Hub;
use crate::link;

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
    listener: TcpListener,
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
    /// Opens the state and binds the listener.
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
        let addr = SocketAddr::new(config.bind.resolve()?, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        // With port 0 the kernel chose: advertise the real one.
        if let Ok(bound) = listener.local_addr() {
            config.port = bound.port();
        }
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
        crate::agent_host::attach(&hub)?;
        Ok(Gateway { hub, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let ip = addr.ip();
                        let limits = &hub.config.limits;
                        if hub.connection_count() + hub.preauth.held() >= limits.max_connections {
                            tracing::warn!(%ip, max = limits.max_connections, "connection cap reached; answering 503");
                            tokio::spawn(refuse_503(tcp, "Too many connections"));
                        } else if hub.preauth.acquire(ip) {
                            tokio::spawn(link::serve(hub.clone(), tcp, ip));
                        } else {
                            tracing::warn!(%ip, "too many unauthenticated sockets; answering 503");
                            tokio::spawn(refuse_503(tcp, "Too many unauthenticated sockets"));
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
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
    }
}

async fn refuse_503(mut tcp: tokio::net::TcpStream, body: &str) {
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(resp.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
