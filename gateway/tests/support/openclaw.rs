//! The pinned reference OpenClaw (`openclaw@2026.9.6`), located through `PINCER_OPENCLAW` and
//! `PINCER_NODE` (set by `scripts/test.sh`), run with its state in a test folder.
//! Included by several test binaries, each using a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "openclaw_headless.rs"]
mod headless;

/// The shared token the interop tests give pincer-gateway and pass to the OpenClaw CLI.
pub const TOKEN: &str = "openclaw-interop-token";

pub struct Reference {
    node: PathBuf,
    mjs: PathBuf,
}

pub fn reference() -> Option<Reference> {
    let mjs = std::env::var_os("PINCER_OPENCLAW").map(PathBuf::from);
    let node = std::env::var_os("PINCER_NODE").map(PathBuf::from);
    match (mjs, node) {
        (Some(mjs), Some(node)) if mjs.exists() && node.exists() => Some(Reference { node, mjs }),
        _ => {
            let required = std::env::var("PINCER_REQUIRE_OPENCLAW").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PINCER_OPENCLAW / PINCER_NODE not set or missing"
            );
            eprintln!("skipping: OpenClaw not installed (set PINCER_OPENCLAW and PINCER_NODE)");
            None
        }
    }
}

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reference {
    /// The package's Control UI bundle (`dist/control-ui`, beside `openclaw.mjs`).
    pub fn control_ui_dir(&self) -> PathBuf {
        self.mjs
            .parent()
            .map(|p| p.join("dist/control-ui"))
            .unwrap_or_default()
    }

    pub fn command(&self, home: &Path) -> Command {
        self.command_in(None, home)
    }

    /// `openclaw` run inside the network namespace `ns` (another host), or here.
    pub fn command_in(&self, ns: Option<&str>, home: &Path) -> Command {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.node);
                c
            }
            None => Command::new(&self.node),
        };
        c.arg(&self.mjs).envs(headless::env(home));
        c
    }

    /// Runs an operator command with `--url`/`--token` and a 60 s limit.
    pub fn cli(&self, home: &Path, url: &str, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--url", url, "--token", TOKEN]);
        self.run(home, &full)
    }

    /// Runs `openclaw ARGS` as given (with a 60 s limit).
    pub fn run(&self, home: &Path, args: &[&str]) -> Output {
        self.run_in(None, home, args)
    }

    /// Runs `openclaw ARGS` inside the namespace `ns` (with a 60 s limit).
    pub fn run_in(&self, ns: Option<&str>, home: &Path, args: &[&str]) -> Output {
        let mut child = self
            .command_in(ns, home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openclaw");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("openclaw {args:?} did not finish in 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", show(o));
    let text = String::from_utf8_lossy(&o.stdout);
    let start = text.find(['{', '[']).unwrap_or(0);
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(o)))
}

impl Reference {
    /// Starts the real OpenClaw gateway on loopback `port` with token auth, its state under
    /// `home`, and waits until it answers `connect` (it needs ~15 s to start).
    pub fn start_gateway(&self, home: &Path, port: u16) -> Proc {
        self.start_gateway_with(home, port, false)
    }

    /// Same, with `gateway.tls` on (a self-signed certificate it generates itself) when `tls`;
    /// then it is waited for with a plain TCP connect.
    pub fn start_gateway_with(&self, home: &Path, port: u16, tls: bool) -> Proc {
        self.start_gateway_configured(home, port, tls, serde_json::json!({}))
    }

    /// Same, with `nodes` merged into the config's `gateway.nodes` (e.g. `allowCommands`).
    pub fn start_gateway_configured(
        &self,
        home: &Path,
        port: u16,
        tls: bool,
        nodes: Value,
    ) -> Proc {
        self.start_gateway_merged(home, port, tls, nodes, serde_json::json!({}))
    }

    /// Same, with the top-level keys of `extra` (e.g. `models`, `agents`, `tools`) added.
    pub fn start_gateway_merged(
        &self,
        home: &Path,
        port: u16,
        tls: bool,
        nodes: Value,
        extra: Value,
    ) -> Proc {
        std::fs::create_dir_all(home).expect("mkdir");
        let mut config = headless::config(port, TOKEN, tls);
        if nodes.as_object().is_some_and(|o| !o.is_empty()) {
            config["gateway"]["nodes"] = nodes;
        }
        if let (Some(c), Some(x)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                c.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(home.join("openclaw.json"), config.to_string()).expect("config");
        let child = self
            .command(home)
            .args(["gateway", "run"])
            .stdout(std::fs::File::create(home.join("gateway.log")).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openclaw gateway");
        let proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if tls {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_secs(5)); // its sidecars start after the port
                    return proc;
                }
                assert!(
                    Instant::now() < deadline,
                    "OpenClaw TLS gateway not up after 90 s"
                );
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let o = self.cli(
                home,
                &format!("ws://127.0.0.1:{port}"),
                &["gateway", "health", "--json"],
            );
            if o.status.success() {
                return proc;
            }
            assert!(
                Instant::now() < deadline,
                "OpenClaw gateway not up after 90 s: {}",
                show(&o)
            );
            std::thread::sleep(Duration::from_millis(1000));
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
