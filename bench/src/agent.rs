//! `pincer-bench agent`: one chat turn's gateway overhead and memory with streaming sessions,
//! pincer-gateway and the reference side by side, against the same scripted fake provider
//! (`tests/support/fake_provider.rs`, the chat-completions stream):
//!
//! * `chat.send` → first `chat` delta, and → `final`, p50 over the samples, next to the same
//!   figures for the provider alone (a direct HTTP request to it); the difference is the
//!   gateway's overhead;
//! * gateway RSS (process tree) idle, and at its peak while 20 sessions stream at once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pincer_client::session::Session;
use pincer_gateway::operator::call::{session, CallOptions};
use serde_json::json;
use tokio::process::Command;

#[path = "../../tests/support/fake_provider.rs"]
pub(crate) mod fake_provider;
use fake_provider::{Dialect, FakeProvider, Reply};

use crate::{
    free_port, mb, openclaw_headless, read_url, temp_dir, tree_rss_kb, Kind, Server, TOKEN,
};

/// The scripted reply of every measured turn: 10 words, 5 ms apart.
fn reply() -> Reply {
    Reply::Text {
        chunks: (0..10).map(|i| format!("word{i} ")).collect(),
        delay_ms: 5,
    }
}

/// A long reply for the memory figure: 3 s of streaming.
fn long_reply() -> Reply {
    Reply::Text {
        chunks: (0..100).map(|i| format!("token{i} ")).collect(),
        delay_ms: 30,
    }
}

struct Turn {
    first: Duration,
    done: Duration,
}

/// The provider alone: POST → first delta, → end of the stream.
async fn direct(fake: &FakeProvider) -> Result<Turn> {
    fake.push(reply());
    let http = pincer_agent::http::Client::new();
    let body = json!({ "model": "fake-model", "stream": true, "messages": [{ "role": "user", "content": "hi" }] });
    let t0 = Instant::now();
    let mut res = http
        .post(
            &format!("{}/chat/completions", fake.base_url()),
            &[],
            serde_json::to_vec(&body)?,
            Duration::from_secs(10),
        )
        .await?;
    let mut first = None;
    while let Some(chunk) = res.chunk().await? {
        if first.is_none() && String::from_utf8_lossy(&chunk).contains("\"content\"") {
            first = Some(t0.elapsed());
        }
    }
    Ok(Turn {
        first: first.ok_or_else(|| anyhow!("no content from the fake"))?,
        done: t0.elapsed(),
    })
}

async fn turn(s: &mut Session, fake: &FakeProvider, key: &str) -> Result<Turn> {
    fake.push(reply());
    let id = pincer_os::uuid_v4();
    let t0 = Instant::now();
    s.request(
        "chat.send",
        &json!({ "sessionKey": key, "message": "count to ten", "idempotencyKey": id }),
    )
    .await?;
    let mut first = None;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), s.next_event())
            .await
            .context("no final in 120 s")?
            .map_err(|c| anyhow!("closed {} {}", c.code, c.reason))?;
        let p = e.payload.unwrap_or_default();
        if e.event.as_str() != "chat" || p["runId"] != id.as_str() {
            continue;
        }
        match p["state"].as_str() {
            Some("delta") if first.is_none() => first = Some(t0.elapsed()),
            Some("final") => {
                return Ok(Turn {
                    first: first.unwrap_or_else(|| t0.elapsed()),
                    done: t0.elapsed(),
                })
            }
            Some("error" | "aborted") => bail!("turn failed: {p}"),
            _ => {}
        }
    }
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Figures {
    first: Duration,
    done: Duration,
    idle_kb: u64,
    streaming_kb: u64,
}

async fn measure(server: &Server, fake: &FakeProvider, samples: usize) -> Result<Figures> {
    let pid = server.child.id().ok_or_else(|| anyhow!("no pid"))?;
    let dir = temp_dir("agent-client");
    let mut o = CallOptions::new(server.url.clone(), dir);
    o.token = Some(TOKEN.into());
    o.timeout = Duration::from_secs(60);
    let mut s = session(&o).await?;
    // Warm-up (the reference prepares its workspace on the first turn).
    for _ in 0..2 {
        turn(&mut s, fake, "agent:main:bench").await?;
    }
    let (mut first, mut done) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = turn(&mut s, fake, "agent:main:bench").await?;
        first.push(t.first);
        done.push(t.done);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kb = tree_rss_kb(pid);
    // 20 sessions streaming at once, one client each.
    let mut clients = Vec::new();
    for i in 0..20 {
        let dir = temp_dir(&format!("agent-client-{i}"));
        let mut o = CallOptions::new(server.url.clone(), dir);
        o.token = Some(TOKEN.into());
        o.timeout = Duration::from_secs(60);
        clients.push(session(&o).await?);
    }
    for _ in 0..20 {
        fake.push(long_reply());
    }
    let mut runs = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        runs.push(tokio::spawn(async move {
            let id = pincer_os::uuid_v4();
            c.request(
                "chat.send",
                &json!({ "sessionKey": format!("agent:main:stream-{i}"), "message": "stream", "idempotencyKey": id }),
            )
            .await?;
            loop {
                let e = c
                    .next_event()
                    .await
                    .map_err(|c| anyhow!("closed {}", c.code))?;
                let p = e.payload.unwrap_or_default();
                if e.event.as_str() == "chat"
                    && p["runId"] == id.as_str()
                    && matches!(p["state"].as_str(), Some("final" | "error" | "aborted"))
                {
                    return anyhow::Ok(p["state"] == "final");
                }
            }
        }));
    }
    let mut streaming_kb = 0;
    while runs.iter().any(|r| !r.is_finished()) {
        streaming_kb = streaming_kb.max(tree_rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in runs {
        if !r.await?? {
            bail!("a streaming session did not finish");
        }
    }
    Ok(Figures {
        first: p50(first),
        done: p50(done),
        idle_kb,
        streaming_kb,
    })
}

/// pincer-gateway with the fake model configured, plus `extra` arguments to `run`.
pub(crate) async fn spawn_pincer(
    bin: &Path,
    fake: &FakeProvider,
    extra: &[String],
) -> Result<Server> {
    spawn_pincer_with(bin, &fake.gateway_toml("fakeoai", "fake-model", ""), extra).await
}

/// pincer-gateway with `config` as its `gateway.toml`, plus `extra` arguments to `run`.
pub(crate) async fn spawn_pincer_with(
    bin: &Path,
    config: &str,
    extra: &[String],
) -> Result<Server> {
    let dir = temp_dir("gw");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config)?;
    let mut child = Command::new(bin)
        .args(["run", "--port", "0", "--token", TOKEN, "--state-dir"])
        .arg(dir.join("state"))
        .arg("--config")
        .arg(&cfg)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let url = read_url(&mut child, "pincer-gateway listening on ").await?;
    Ok(Server {
        kind: Kind::Pincer,
        child,
        url,
        dir: Some(dir),
        stopped: false,
    })
}

/// The reference with the same fake model, once an operator session answers `health`.
pub(crate) async fn spawn_openclaw(node: &Path, mjs: &Path, fake: &FakeProvider) -> Result<Server> {
    let dir = temp_dir("agent-openclaw");
    let port = free_port()?;
    let mut config = openclaw_headless::config(port, TOKEN, false);
    config["models"] = json!({ "mode": "merge", "providers": { "fakeoai": {
        "baseUrl": fake.base_url(), "apiKey": "k", "api": "openai-completions",
        "models": [{ "id": "fake-model", "name": "Fake Model" }] } } });
    config["agents"] = json!({ "defaults": { "model": { "primary": "fakeoai/fake-model" } } });
    config["tools"] = json!({ "toolSearch": false });
    std::fs::write(dir.join("openclaw.json"), config.to_string())?;
    let child = Command::new(node)
        .arg(mjs)
        .args(["gateway", "run"])
        .envs(openclaw_headless::env(&dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let server = Server {
        kind: Kind::OpenClaw,
        child,
        url: format!("ws://127.0.0.1:{port}"),
        dir: Some(dir),
        stopped: false,
    };
    // Up when an operator session opens and `health` answers.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cdir = temp_dir("agent-probe");
        let mut o = CallOptions::new(server.url.clone(), cdir);
        o.token = Some(TOKEN.into());
        o.timeout = Duration::from_secs(5);
        if pincer_gateway::operator::call::call(&o, "health", json!({}))
            .await
            .is_ok()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("OpenClaw not up after 120 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the agent figures and prints them as a markdown table.
pub async fn run(
    gateway: &Path,
    openclaw: Option<(PathBuf, PathBuf)>,
    samples: usize,
) -> Result<()> {
    let size = std::fs::metadata(gateway).map(|m| m.len()).unwrap_or(0);
    let fake = FakeProvider::start(Dialect::Completions).await;
    let mut alone = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = direct(&fake).await?;
        alone.0.push(t.first);
        alone.1.push(t.done);
    }
    let (alone_first, alone_done) = (p50(alone.0), p50(alone.1));
    eprintln!("measuring pincer-gateway…");
    let server = spawn_pincer(gateway, &fake, &[]).await?;
    let ours = measure(&server, &fake, samples).await;
    server.stop().await;
    let ours = ours?;
    let theirs = match openclaw {
        Some((node, mjs)) if node.exists() && mjs.exists() => {
            eprintln!("measuring OpenClaw…");
            let fake = FakeProvider::start(Dialect::Completions).await;
            let server = spawn_openclaw(&node, &mjs, &fake).await?;
            let f = measure(&server, &fake, samples.min(10)).await;
            server.stop().await;
            Some(f?)
        }
        _ => None,
    };
    let col =
        |f: &dyn Fn(&Figures) -> String| -> String { theirs.as_ref().map_or("skipped".into(), f) };
    let over = |a: Duration, b: Duration| a.saturating_sub(b);
    println!(
        "pincer-bench agent, {}, {samples} turns (OpenClaw: {}), provider: 10 deltas 5 ms apart\n",
        crate::utc_now(),
        samples.min(10)
    );
    println!("| figure | pincer-gateway | OpenClaw 2026.9.6 | provider alone |");
    println!("|---|---|---|---|");
    println!(
        "| chat.send → first delta, p50 | {} | {} | {} |",
        ms(ours.first),
        col(&|t| ms(t.first)),
        ms(alone_first)
    );
    println!(
        "| overhead to first delta (minus the provider's) | {} | {} | — |",
        ms(over(ours.first, alone_first)),
        col(&|t| ms(over(t.first, alone_first)))
    );
    println!(
        "| chat.send → final, p50 | {} | {} | {} |",
        ms(ours.done),
        col(&|t| ms(t.done)),
        ms(alone_done)
    );
    println!(
        "| overhead to final | {} | {} | — |",
        ms(over(ours.done, alone_done)),
        col(&|t| ms(over(t.done, alone_done)))
    );
    println!(
        "| RSS after the turns | {} | {} | — |",
        mb(ours.idle_kb),
        col(&|t| mb(t.idle_kb))
    );
    println!(
        "| peak RSS, 20 sessions streaming at once | {} | {} | — |",
        mb(ours.streaming_kb),
        col(&|t| mb(t.streaming_kb))
    );
    println!("| gateway binary | {size} bytes | — | — |");
    Ok(())
}
