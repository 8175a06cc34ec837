//! `pincer-bench`: the same measurements, in one run, against pincer-gateway, a bare
//! tokio-tungstenite echo server (the ceiling for request/response over this socket stack) and
//! the reference OpenClaw gateway when it is installed. Prints a markdown table.
//!
//! These are figures, not tests: nothing here asserts a target.

use pincer_protocol::clip;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use pincer_client::Ws;

const TOKEN: &str = "bench-token-0123456789";

#[derive(Parser)]
#[command(
    name = "pincer-bench",
    about = "pincer-gateway vs echo ceiling vs OpenClaw, side by side"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// pincer-gateway binary (default: target/release/pincer-gateway).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// A second pincer-gateway build to compare (e.g. the static musl one).
    #[arg(long)]
    gateway_alt: Option<PathBuf>,
    /// openclaw.mjs of the reference (default: the cache of scripts/install-openclaw.sh).
    #[arg(long)]
    openclaw: Option<PathBuf>,
    /// Node 24 binary for the reference.
    #[arg(long)]
    node: Option<PathBuf>,
    /// Idle authenticated connections to hold for the RSS figures (one row per count).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    conns: Vec<usize>,
    /// Throughput for 2 s instead of 5 (and fewer node.invoke samples).
    #[arg(long)]
    quick: bool,
    /// Skip the reference even when installed.
    #[arg(long)]
    no_openclaw: bool,
    /// pincer-node binary for the node figures (default: target/release/pincer-node).
    #[arg(long)]
    pincer_node: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// A bare tokio-tungstenite server that echoes every text frame (the ceiling).
    EchoServer {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// One chat turn's gateway overhead and RSS with 20 streaming sessions, against a fake
    /// provider, pincer-gateway and the reference side by side.
    Agent {
        /// Measured turns per gateway (OpenClaw: at most 10).
        #[arg(long, default_value_t = 30)]
        samples: usize,
    },
    /// WebChat in headless Chromium: bytes and navigation → connected, for pincer-gateway's own
    /// page, the official Control UI served by pincer-gateway, and OpenClaw serving it.
    Webchat,
    /// The Telegram channel against a fake Bot API: RSS polling idle, update → first
    /// sendMessage and → reply complete, pincer-gateway and the reference side by side.
    Telegram {
        /// Measured DMs per gateway (OpenClaw: at most 10).
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// The software H.264 encoder on 640x480 frames vs ffmpeg's libx264 ultrafast.
    Video,
    /// camera.snap end to end vs a bare V4L2 capture, on vivid in the tests/vm qemu VM.
    Camera {
        /// Static x86_64-musl pincer-node for the VM (default:
        /// target/x86_64-unknown-linux-musl/release/pincer-node).
        #[arg(long)]
        vm_node: Option<PathBuf>,
    },
}

mod agent;
mod camera;
#[path = "../../tests/support/cdp.rs"]
mod cdp;
#[path = "../../gateway/tests/support/openclaw_headless.rs"]
mod openclaw_headless;
mod telegram;
mod video;
mod webchat;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The gateway under test and the reference (node, openclaw.mjs) unless --no-openclaw.
    let gw = cli
        .gateway
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/pincer-gateway"));
    let reference = {
        let (openclaw, node) = reference_paths(&cli);
        (!cli.no_openclaw).then_some((node, openclaw))
    };
    match cli.cmd {
        Some(Cmd::EchoServer { port }) => rt.block_on(echo_server(port)),
        Some(Cmd::Camera { ref vm_node }) => rt.block_on(camera::run(&gw, vm_node.clone())),
        Some(Cmd::Telegram { samples }) => rt.block_on(telegram::run(&gw, reference, samples)),
        Some(Cmd::Webchat) => rt.block_on(webchat::run(&gw, reference)),
        Some(Cmd::Video) => video::run(),
        Some(Cmd::Agent { samples }) => rt.block_on(agent::run(&gw, reference, samples)),
        None => rt.block_on(run(cli)),
    }
}

// ---- the echo ceiling ------------------------------------------------------------------------

async fn echo_server(port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("echo listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                if m.is_text() && tx.send(m).await.is_err() {
                    break;
                }
            }
        });
    }
}

// ---- servers under test ----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Pincer,
    Echo,
    OpenClaw,
}

struct Server {
    kind: Kind,
    child: Child,
    url: String,
    dir: Option<PathBuf>,
    stopped: bool,
}

impl Server {
    /// Ends the server's whole process group (OpenClaw runs children): SIGTERM, up to 5 s to
    /// exit, then SIGKILL for whatever is left. Removes its temporary directory.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain syscall; every server is spawned as the leader of its own group.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
            // SAFETY: as above; ends children that outlived the leader.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        self.stopped = true;
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Error paths: no time to be polite.
        if let Some(pid) = self.child.id() {
            // SAFETY: plain syscall on the server's own process group.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pincer-bench-{tag}-{}-{}",
        std::process::id(),
        now_ns()
    ));
    let _ = std::fs::create_dir_all(&d);
    d
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Spec {
    kind: Kind,
    bin: PathBuf,
    node: Option<PathBuf>,
}

async fn spawn(spec: &Spec) -> Result<(Server, Instant)> {
    match spec.kind {
        Kind::Pincer => {
            let dir = temp_dir("gw");
            let t0 = Instant::now();
            let mut child = Command::new(&spec.bin)
                .args(["run", "--port", "0", "--token", TOKEN, "--state-dir"])
                .arg(&dir)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawn {}", spec.bin.display()))?;
            let url = read_url(&mut child, "pincer-gateway listening on ").await?;
            Ok((
                Server {
                    kind: spec.kind,
                    child,
                    url,
                    dir: Some(dir),
                    stopped: false,
                },
                t0,
            ))
        }
        Kind::Echo => {
            let t0 = Instant::now();
            let mut child = Command::new(&spec.bin)
                .args(["echo-server", "--port", "0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()?;
            let url = read_url(&mut child, "echo listening on ").await?;
            Ok((
                Server {
                    kind: spec.kind,
                    child,
                    url,
                    dir: None,
                    stopped: false,
                },
                t0,
            ))
        }
        Kind::OpenClaw => spawn_openclaw(spec, false).await,
    }
}

/// The reference gateway on a free loopback port; with `tls`, on `wss://` with the
/// self-signed certificate it generates (under `<dir>/state/gateway/tls/`).
async fn spawn_openclaw(spec: &Spec, tls: bool) -> Result<(Server, Instant)> {
    let dir = temp_dir("openclaw");
    let port = free_port()?;
    let config = openclaw_headless::config(port, TOKEN, tls);
    std::fs::write(dir.join("openclaw.json"), config.to_string())?;
    let node = spec.node.clone().ok_or_else(|| anyhow!("no node binary"))?;
    let t0 = Instant::now();
    let child = Command::new(node)
        .arg(&spec.bin)
        .args(["gateway", "run"])
        .envs(openclaw_headless::env(&dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok((
        Server {
            kind: spec.kind,
            child,
            url: format!("{}://127.0.0.1:{port}", if tls { "wss" } else { "ws" }),
            dir: Some(dir),
            stopped: false,
        },
        t0,
    ))
}

async fn read_url(child: &mut Child, prefix: &str) -> Result<String> {
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("server did not print its address")??
        .ok_or_else(|| anyhow!("server exited"))?;
    line.strip_prefix(prefix)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("unexpected first line {line:?}"))
}

// ---- client side -----------------------------------------------------------------------------

/// The operator the bench connects as: token only, no device identity (thousands of sockets
/// must not pair thousands of devices), built and sent by pincer-client like every client.
fn bench_hello(scopes: &[&str]) -> pincer_client::hello::Hello {
    let mut h = pincer_client::hello::Hello::operator("pincer-bench", scopes);
    h.step_timeout = IO_TIMEOUT;
    h
}

/// Every await on a server is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

async fn send_text(ws: &mut Ws, text: String) -> Result<()> {
    tokio::time::timeout(IO_TIMEOUT, ws.send(Message::text(text)))
        .await
        .context("send blocked for 20 s")??;
    Ok(())
}

/// Why a handshake attempt failed: the socket never opened (keep polling fast), or the server
/// answered and refused (OpenClaw while its sidecars start: back off a little).
enum ConnectError {
    Socket(anyhow::Error),
    Refused(anyhow::Error),
}

impl From<ConnectError> for anyhow::Error {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Socket(e) | ConnectError::Refused(e) => e,
        }
    }
}

/// Connects and completes the handshake (for the echo server: one echoed frame).
async fn connect(kind: Kind, url: &str) -> Result<Ws> {
    Ok(try_connect(kind, url).await?)
}

async fn try_connect(kind: Kind, url: &str) -> Result<Ws, ConnectError> {
    let mut dial = pincer_client::dial::Dial::new(url);
    dial.timeout = IO_TIMEOUT;
    let ws = pincer_client::dial::dial(&dial)
        .await
        .map_err(|e| ConnectError::Socket(e.into()))?;
    if kind == Kind::Echo {
        // The echo ceiling answers no handshake: one echoed frame of the same size stands in.
        let mut ws = ws;
        let hello = bench_hello(&["operator.read"]);
        let params = hello.params(
            None,
            "echo",
            &pincer_client::hello::Credential::Token(TOKEN.into()),
        );
        let text = pincer_protocol::frames::encode_req("c1", "connect", &params)
            .map_err(|e| ConnectError::Refused(e.into()))?;
        send_text(&mut ws, text)
            .await
            .map_err(ConnectError::Refused)?;
        next_text(&mut ws).await.map_err(ConnectError::Refused)?;
        return Ok(ws);
    }
    let credential = pincer_client::hello::Credential::Token(TOKEN.into());
    match pincer_client::hello::connect(ws, &bench_hello(&["operator.read"]), None, &credential)
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(ConnectError::Refused(anyhow!("connect refused: {e}"))),
    }
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .context("no frame in 20 s")?
        {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("eof"),
        }
    }
}

/// One `health` round trip on `ws` (request id `h<n>`); frames with other ids (events) are
/// skipped. For the echo server the "response" is the echoed request.
async fn health(ws: &mut Ws, n: u64) -> Result<()> {
    let id = format!("h{n}");
    send_text(
        ws,
        format!(r#"{{"type":"req","id":"{id}","method":"health","params":{{}}}}"#),
    )
    .await?;
    let needle = format!(r#""id":"{id}""#);
    loop {
        let t = next_text(ws).await?;
        if t.contains(&needle) && t.contains(r#""type""#) {
            if t.contains(r#""ok":false"#) {
                bail!("health failed: {}", clip(&t, 200));
            }
            return Ok(());
        }
    }
}

/// Start → first successful handshake: connect every 3 ms while the port is closed; after a
/// refusal by the server (OpenClaw answers UNAVAILABLE `startup-sidecars` for seconds) every
/// 100 ms.
async fn start_to_hello(spec: &Spec) -> Result<(Server, Duration)> {
    let (mut server, t0) = spawn(spec).await?;
    let limit = Duration::from_secs(if spec.kind == Kind::OpenClaw { 120 } else { 10 });
    loop {
        let pause =
            match tokio::time::timeout(Duration::from_secs(5), try_connect(spec.kind, &server.url))
                .await
            {
                Ok(Ok(ws)) => {
                    let took = t0.elapsed();
                    drop(ws);
                    return Ok((server, took));
                }
                Ok(Err(ConnectError::Socket(e))) => (3, e),
                Ok(Err(ConnectError::Refused(e))) => (100, e),
                Err(_) => (100, anyhow!("handshake took over 5 s")),
            };
        if let Ok(Some(status)) = server.child.try_wait() {
            server.stop().await;
            bail!("server exited ({status}) before hello-ok: {}", pause.1);
        }
        if t0.elapsed() > limit {
            server.stop().await;
            bail!("no hello-ok within {} s: {}", limit.as_secs(), pause.1);
        }
        tokio::time::sleep(Duration::from_millis(pause.0)).await;
    }
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

fn anon_kb(pid: u32) -> u64 {
    status_kb(pid, "RssAnon:")
}

/// Own (anonymous) memory of `pid` and all its descendants.
fn tree_anon_kb(pid: u32) -> u64 {
    let mut total = anon_kb(pid);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += tree_anon_kb(c);
    }
    total
}

/// RSS of `pid` and all its descendants.
fn tree_rss_kb(pid: u32) -> u64 {
    let mut total = rss_kb(pid);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += tree_rss_kb(c);
    }
    total
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn raise_nofile() {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[derive(Default, Clone)]
struct Figures {
    start_ms: Option<String>,
    idle: Option<String>,
    idle_private: Option<String>,
    /// RSS with each count of `--conns` idle connections.
    conns: Vec<Option<String>>,
    p50: Option<String>,
    p99: Option<String>,
    rps: Option<String>,
    rps_value: f64,
}

fn cell(r: Result<String>) -> Option<String> {
    Some(r.unwrap_or_else(|e| format!("error: {e}")))
}

async fn measure(spec: &Spec, cli: &Cli) -> Figures {
    let mut f = Figures::default();
    // 1. Start → hello-ok (median of 5; once for OpenClaw, which takes seconds).
    let runs = if spec.kind == Kind::OpenClaw { 1 } else { 5 };
    let mut times = Vec::new();
    let mut server: Option<Server> = None;
    for _ in 0..runs {
        if let Some(old) = server.take() {
            old.stop().await;
        }
        match start_to_hello(spec).await {
            Ok((s, t)) => {
                times.push(t);
                server = Some(s);
            }
            Err(e) => {
                f.start_ms = Some(format!("error: {e}"));
                return f;
            }
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    f.start_ms = Some(if runs > 1 {
        format!("{:.1} ms", median.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} ms (1 run)", median.as_secs_f64() * 1000.0)
    });
    let Some(server) = server else { return f };
    f.measure_running(spec, cli, &server).await;
    server.stop().await;
    f
}

impl Figures {
    /// Figures 2–5 on a server that has answered its first hello-ok.
    async fn measure_running(&mut self, spec: &Spec, cli: &Cli, server: &Server) {
        let f = self;
        let Some(pid) = server.child.id() else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(if spec.kind == Kind::OpenClaw {
            2000
        } else {
            300
        }))
        .await;
        let rss = |p| {
            if spec.kind == Kind::OpenClaw {
                tree_rss_kb(p)
            } else {
                rss_kb(p)
            }
        };

        // 2. Idle RSS, and the part of it that is the process's own (anonymous) memory rather than
        // mapped files such as the shared C library.
        f.idle = Some(mb(rss(pid)));
        f.idle_private = Some(mb(if spec.kind == Kind::OpenClaw {
            tree_anon_kb(pid)
        } else {
            anon_kb(pid)
        }));

        // 4. health round trip on one connection.
        f.p50 = cell(
            async {
                let mut ws = connect(server.kind, &server.url).await?;
                let (warm, n) = (200, 2000);
                for i in 0..warm {
                    health(&mut ws, i).await?;
                }
                let mut lat = Vec::with_capacity(n);
                for i in 0..n as u64 {
                    let t = Instant::now();
                    health(&mut ws, 10_000 + i).await?;
                    lat.push(t.elapsed());
                }
                lat.sort();
                let p = |q: f64| {
                    lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0
                };
                f.p99 = Some(format!("{:.3} ms", p(0.99)));
                Ok(format!("{:.3} ms", p(0.50)))
            }
            .await,
        );

        // 5. Throughput over 10 connections.
        f.rps = cell(
            async {
                let secs = if cli.quick { 2 } else { 5 };
                let done = Arc::new(AtomicU64::new(0));
                let stop = Instant::now() + Duration::from_secs(secs);
                let mut tasks = Vec::new();
                for c in 0..10u64 {
                    let url = server.url.clone();
                    let kind = server.kind;
                    let done = done.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut ws = connect(kind, &url).await?;
                        let mut i = 0;
                        while Instant::now() < stop {
                            health(&mut ws, c * 10_000_000 + i).await?;
                            i += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        anyhow::Ok(())
                    }));
                }
                for t in tasks {
                    t.await??;
                }
                let rps = done.load(Ordering::Relaxed) as f64 / secs as f64;
                f.rps_value = rps;
                Ok(format!("{rps:.0} req/s"))
            }
            .await,
        );

        // 3. RSS with N idle authenticated connections, for each N.
        for &n in &cli.conns {
            f.conns.push(cell(
                async {
                    let sem = Arc::new(tokio::sync::Semaphore::new(16));
                    let mut tasks = Vec::new();
                    for _ in 0..n {
                        let url = server.url.clone();
                        let kind = server.kind;
                        let sem = sem.clone();
                        tasks.push(tokio::spawn(async move {
                            let _p = sem.acquire_owned().await?;
                            tokio::time::timeout(Duration::from_secs(30), connect(kind, &url))
                                .await?
                        }));
                    }
                    let mut held = Vec::new();
                    let mut failed = 0;
                    for t in tasks {
                        match t.await {
                            Ok(Ok(ws)) => held.push(ws),
                            _ => failed += 1,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    let kb = rss(pid);
                    let note = if failed > 0 {
                        format!(" ({failed} refused)")
                    } else {
                        String::new()
                    };
                    drop(held);
                    // Let the server notice the closes before the next count.
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    Ok(format!("{}{note}", mb(kb)))
                }
                .await,
            ));
        }
    }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC` (civil-from-days, no date crate).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Picks one figure out of a column.
type Getter = fn(&Figures) -> &Option<String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `openclaw.mjs` and Node of the reference: the flags, else the install script's cache.
fn reference_paths(cli: &Cli) -> (PathBuf, PathBuf) {
    let cache = std::env::var_os("PINCER_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("pincer")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pincer")))
        .unwrap_or_default()
        .join("openclaw-2026.9.6");
    let openclaw = cli
        .openclaw
        .clone()
        .unwrap_or_else(|| cache.join("pkg/node_modules/openclaw/openclaw.mjs"));
    let node = cli
        .node
        .clone()
        .unwrap_or_else(|| cache.join("node24/package/bin/node"));
    (openclaw, node)
}

async fn run(cli: Cli) -> Result<()> {
    raise_nofile();
    let me = std::env::current_exe()?;
    let gateway = cli
        .gateway
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/pincer-gateway"));
    if !gateway.exists() {
        bail!(
            "{} not found: run `cargo build --release -p pincer-gateway` first",
            gateway.display()
        );
    }
    let (openclaw, node) = reference_paths(&cli);

    let mut columns: Vec<(String, Spec)> = vec![(
        "pincer-gateway".into(),
        Spec {
            kind: Kind::Pincer,
            bin: gateway.clone(),
            node: None,
        },
    )];
    if let Some(alt) = &cli.gateway_alt {
        let name = format!(
            "pincer-gateway ({})",
            alt.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        );
        let label = if alt.to_string_lossy().contains("musl") {
            "pincer-gateway (musl static)".to_owned()
        } else {
            name
        };
        columns.push((
            label,
            Spec {
                kind: Kind::Pincer,
                bin: alt.clone(),
                node: None,
            },
        ));
    }
    columns.push((
        "echo ceiling".into(),
        Spec {
            kind: Kind::Echo,
            bin: me.clone(),
            node: None,
        },
    ));
    let have_openclaw = !cli.no_openclaw && openclaw.exists() && node.exists();
    if have_openclaw {
        columns.push((
            "OpenClaw 2026.9.6".into(),
            Spec {
                kind: Kind::OpenClaw,
                bin: openclaw.clone(),
                node: Some(node.clone()),
            },
        ));
    }

    let mut results = Vec::new();
    for (name, spec) in &columns {
        eprintln!("measuring {name}…");
        results.push(measure(spec, &cli).await);
    }
    if !have_openclaw {
        columns.push((
            "OpenClaw 2026.9.6".into(),
            Spec {
                kind: Kind::OpenClaw,
                bin: PathBuf::new(),
                node: None,
            },
        ));
        let na = Some(
            if cli.no_openclaw {
                "skipped (--no-openclaw)"
            } else {
                "not installed"
            }
            .to_owned(),
        );
        results.push(Figures {
            start_ms: na.clone(),
            idle: na.clone(),
            idle_private: na.clone(),
            conns: vec![na.clone(); cli.conns.len()],
            p50: na.clone(),
            p99: na.clone(),
            rps: na,
            rps_value: 0.0,
        });
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = String::new();
    out.push_str(&format!(
        "pincer-bench, {}, {} cores ({cpu}), {} idle connections{}\n\n",
        utc_now(),
        cores,
        cli.conns
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        if cli.quick { ", quick" } else { "" }
    ));
    out.push_str("| figure |");
    for (name, _) in &columns {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    let rows: [(&str, Getter); 6] = [
        ("start → first hello-ok", |f| &f.start_ms),
        ("idle RSS", |f| &f.idle),
        ("idle RSS, own memory (RssAnon)", |f| &f.idle_private),
        ("`health` round trip p50 (1 conn)", |f| &f.p50),
        ("`health` round trip p99 (1 conn)", |f| &f.p99),
        ("`health` throughput (10 conns)", |f| &f.rps),
    ];
    let row = |out: &mut String, label: &str, cells: Vec<Option<&str>>| {
        out.push_str(&format!("| {label} |"));
        for c in cells {
            out.push_str(&format!(" {} |", c.unwrap_or("—")));
        }
        out.push('\n');
    };
    for (i, (label, get)) in rows.into_iter().enumerate() {
        row(
            &mut out,
            label,
            results.iter().map(|f| get(f).as_deref()).collect(),
        );
        if i == 2 {
            for (k, n) in cli.conns.iter().enumerate() {
                let cells = results
                    .iter()
                    .map(|f| f.conns.get(k).and_then(|c| c.as_deref()))
                    .collect();
                row(&mut out, &format!("RSS with {n} idle connections"), cells);
            }
        }
    }
    let pincer = results[0].rps_value;
    let echo = columns
        .iter()
        .position(|(_, s)| s.kind == Kind::Echo)
        .map_or(0.0, |i| results[i].rps_value);
    let oc = if have_openclaw {
        results.last().map_or(0.0, |f| f.rps_value)
    } else {
        0.0
    };
    out.push('\n');
    let mut ratios = Vec::new();
    if pincer > 0.0 && echo > 0.0 {
        ratios.push(format!(
            "{:.0} % of the echo ceiling",
            100.0 * pincer / echo
        ));
    }
    if pincer > 0.0 && oc > 0.0 {
        ratios.push(format!("{:.1}× OpenClaw", pincer / oc));
    }
    if !ratios.is_empty() {
        out.push_str(&format!(
            "pincer-gateway throughput = {}",
            ratios.join(", ")
        ));
    }
    out.push('\n');
    out.push_str(&match measure_node(&cli, &gateway).await {
        Ok(t) => t,
        Err(e) => format!("\npincer-node figures: error: {e}\n"),
    });
    if have_openclaw {
        let spec = Spec {
            kind: Kind::OpenClaw,
            bin: openclaw.clone(),
            node: Some(node.clone()),
        };
        out.push_str(&match measure_node_wss(&cli, &spec).await {
            Ok(t) => t,
            Err(e) => format!("| idle RSS over wss:// | error: {e} |\n"),
        });
    }
    println!("{out}");
    let results_dir = workspace_root().join("bench/results");
    let _ = std::fs::create_dir_all(&results_dir);
    let _ = std::fs::write(results_dir.join("latest.md"), &out);
    Ok(())
}

/// A socket through the operator handshake, with read and write scopes.
async fn operator_socket(url: &str) -> Result<Ws> {
    let mut dial = pincer_client::dial::Dial::new(url);
    dial.timeout = IO_TIMEOUT;
    let ws = pincer_client::dial::dial(&dial).await?;
    let credential = pincer_client::hello::Credential::Token(TOKEN.into());
    let hello = bench_hello(&["operator.read", "operator.write"]);
    let (ws, _) = pincer_client::hello::connect(ws, &hello, None, &credential)
        .await
        .context("operator connect")?;
    Ok(ws)
}

/// pincer-node connected to pincer-gateway: its idle RSS, and `node.invoke` round trips
/// operator → gateway → node → gateway → operator for `system.which`.
async fn measure_node(cli: &Cli, gateway: &Path) -> Result<String> {
    let node_bin = cli
        .pincer_node
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/pincer-node"));
    if !node_bin.exists() {
        bail!(
            "{} not found: cargo build --release -p pincer-node",
            node_bin.display()
        );
    }
    let (server, _) = start_to_hello(&Spec {
        kind: Kind::Pincer,
        bin: gateway.to_path_buf(),
        node: None,
    })
    .await?;
    let state = temp_dir("node");
    let mut node = Command::new(&node_bin)
        .args([
            "run",
            "--gateway",
            &server.url,
            "--token",
            TOKEN,
            "--caps",
            "system",
            "--name",
            "bench-node",
            "--state-dir",
        ])
        .arg(&state)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let result = node_figures(cli, &server, &mut node).await;
    let _ = node.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(2), node.wait()).await;
    let _ = std::fs::remove_dir_all(&state);
    server.stop().await;
    result
}

/// pincer-node over `wss://` (rustls, certificate pinned) to the reference gateway's TLS
/// listener: the node's idle RSS once connected, as rows for the pincer-node table.
async fn measure_node_wss(cli: &Cli, spec: &Spec) -> Result<String> {
    let node_bin = cli
        .pincer_node
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/pincer-node"));
    let (server, _) = spawn_openclaw(spec, true).await?;
    let result = async {
        let dir = server.dir.clone().ok_or_else(|| anyhow!("no state dir"))?;
        let cert = dir.join("state/gateway/tls/gateway-cert.pem");
        let up_by = Instant::now() + Duration::from_secs(120);
        while !cert.exists() || TcpStream::connect(server.url.trim_start_matches("wss://")).await.is_err() {
            if Instant::now() > up_by {
                bail!("OpenClaw's TLS listener not up within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&cert)
            .output()
            .context("openssl (for the certificate pin)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let pin: String = text
            .split('=')
            .nth(1)
            .unwrap_or("")
            .trim()
            .replace(':', "")
            .to_ascii_lowercase();
        if pin.len() != 64 {
            bail!("no SHA-256 fingerprint from openssl: {text}");
        }
        let state = temp_dir("node-wss");
        let mut node = Command::new(&node_bin)
            .args(["run", "--gateway", &server.url, "--token", TOKEN, "--caps", "system"])
            .args(["--tls-fingerprint", &format!("sha256:{pin}"), "--state-dir"])
            .arg(&state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = node.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let connected = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("connected gateway=wss://") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if !connected {
            bail!("pincer-node did not connect over wss:// within 60 s");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = node.id().ok_or_else(|| anyhow!("node exited"))?;
        let (rss, anon) = (rss_kb(pid), anon_kb(pid));
        let _ = node.start_kill();
        let _ = node.wait().await;
        let _ = std::fs::remove_dir_all(&state);
        Ok(format!(
            "| idle RSS over wss:// (rustls, pinned; to OpenClaw's TLS listener) | {} |\n| idle RSS over wss://, own memory (RssAnon) | {} |\n",
            mb(rss),
            mb(anon)
        ))
    }
    .await;
    server.stop().await;
    result
}

async fn node_figures(cli: &Cli, server: &Server, node: &mut Child) -> Result<String> {
    let mut ws = operator_socket(&server.url).await?;
    let listed_by = Instant::now() + Duration::from_secs(20);
    // Wait for the node to be listed.
    let node_id = loop {
        if Instant::now() > listed_by {
            bail!("pincer-node not listed as connected within 20 s");
        }
        send_text(
            &mut ws,
            r#"{"type":"req","id":"nl","method":"node.list","params":{}}"#.to_owned(),
        )
        .await?;
        let t = loop {
            let t = next_text(&mut ws).await?;
            if t.contains(r#""id":"nl""#) {
                break t;
            }
        };
        let v: serde_json::Value = serde_json::from_str(&t)?;
        if let Some(id) = v["payload"]["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["connected"] == true))
            .and_then(|n| n["nodeId"].as_str())
        {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n = if cli.quick { 200 } else { 1000 };
    let mut lat = Vec::with_capacity(n);
    for i in 0..(n + 50) {
        let req = format!(
            r#"{{"type":"req","id":"i{i}","method":"node.invoke","params":{{"nodeId":"{node_id}","command":"system.which","params":{{"bins":["sh"]}},"idempotencyKey":"k{i}"}}}}"#
        );
        let t0 = Instant::now();
        send_text(&mut ws, req).await?;
        let needle = format!(r#""id":"i{i}""#);
        loop {
            let t = next_text(&mut ws).await?;
            if t.contains(&needle) {
                if !t.contains(r#""ok":true"#) {
                    bail!("invoke failed: {}", clip(&t, 200));
                }
                break;
            }
        }
        if i >= 50 {
            lat.push(t0.elapsed());
        }
    }
    lat.sort();
    let p =
        |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = node.id().ok_or_else(|| anyhow!("node exited"))?;
    let rss = rss_kb(pid);
    let anon = anon_kb(pid);
    Ok(format!(
        "\n| pincer-node (connected over ws://, caps system) | value |\n|---|---|\n| idle RSS | {} |\n| idle RSS, own memory (RssAnon) | {} |\n| `node.invoke` system.which round trip p50 | {:.3} ms |\n| `node.invoke` system.which round trip p99 | {:.3} ms |\n",
        mb(rss),
        mb(anon),
        p(0.5),
        p(0.99)
    ))
}
