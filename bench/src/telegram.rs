//! `pincer-bench telegram`: the Telegram channel against a fake Bot API on loopback
//! (`tests/support/fake_telegram.rs`) and the fake provider, pincer-gateway and the reference
//! configured against the same fakes, side by side:
//!
//! * gateway RSS (process tree) with the bot polling and nothing to do, and after the turns;
//! * update → first `sendMessage`: from the moment `getUpdates` hands a private message to the
//!   gateway to the first message the bot sends into that chat (pincer's streamed draft; the
//!   reference's progress draft or its answer), median over the samples;
//! * update → reply complete: to the moment the chat shows the provider's whole text.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use tokio::process::Command;

use crate::agent::fake_provider::{Dialect, FakeProvider, Reply};
use crate::{free_port, mb, openclaw_headless, temp_dir, tree_rss_kb, Kind, Server, TOKEN};

#[path = "../../tests/support/fake_telegram.rs"]
mod fake_telegram;
use fake_telegram::{Call, FakeTelegram};

/// The owner's user id (allowed without pairing on both gateways).
const OWNER: i64 = 4242;
/// The scripted reply of every measured turn.
const REPLY: [&str; 4] = ["The kitchen ", "is warm ", "and the lights ", "are off."];

struct Figures {
    idle_kb: u64,
    after_kb: u64,
    first: Duration,
    done: Duration,
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The visible text of what the bot last sent or edited into `chat` since call `from`.
fn last_text(calls: &[Call], from: usize, chat: i64) -> Option<String> {
    calls
        .iter()
        .skip(from)
        .filter(|c| matches!(c.method.as_str(), "sendMessage" | "editMessageText"))
        .filter(|c| fake_telegram::chat_of(&c.params) == Some(chat))
        .filter_map(|c| {
            let t = c.params["text"].as_str()?;
            Some(if c.params["parse_mode"] == "HTML" {
                fake_telegram::strip_html(t).unwrap_or_else(|_| t.to_owned())
            } else {
                t.to_owned()
            })
        })
        .next_back()
}

async fn measure(
    server: &Server,
    fake: &FakeProvider,
    tg: &FakeTelegram,
    samples: usize,
) -> Result<Figures> {
    let pid = server.child.id().ok_or_else(|| anyhow!("no pid"))?;
    // Polling and idle: the bot is connected and a few long polls went by.
    let polls = |c: &[Call]| c.iter().filter(|c| c.method == "getUpdates").count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while polls(&tg.calls()) < 3 {
        if Instant::now() > deadline {
            bail!("the gateway never polled the fake Bot API");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kb = tree_rss_kb(pid);
    let want = REPLY.concat();
    let (mut first, mut done) = (Vec::new(), Vec::new());
    // One warm-up turn (the reference prepares its workspace on the first).
    for i in 0..samples + 1 {
        fake.push(Reply::Text {
            chunks: REPLY.iter().map(|s| (*s).to_owned()).collect(),
            delay_ms: 20,
        });
        let from = tg.calls().len();
        let id = tg.dm(OWNER, "Ann", &format!("how is the house? ({i})"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let (t_first, t_done) = loop {
            let calls = tg.calls();
            let first_send = calls
                .iter()
                .skip(from)
                .find(|c| {
                    c.method == "sendMessage" && fake_telegram::chat_of(&c.params) == Some(OWNER)
                })
                .map(|c| c.at);
            let complete = last_text(&calls, from, OWNER).is_some_and(|t| t.trim() == want);
            if let (Some(f), true) = (first_send, complete) {
                let end = calls
                    .iter()
                    .skip(from)
                    .filter(|c| fake_telegram::chat_of(&c.params) == Some(OWNER))
                    .map(|c| c.at)
                    .next_back()
                    .unwrap_or(f);
                break (f, end);
            }
            if Instant::now() > deadline {
                bail!(
                    "turn {i}: no complete reply in 120 s (last: {:?})",
                    last_text(&calls, from, OWNER)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let t0 = tg
            .delivered_at(id)
            .ok_or_else(|| anyhow!("update {id} was never handed out"))?;
        if i > 0 {
            first.push(t_first.saturating_duration_since(t0));
            done.push(t_done.saturating_duration_since(t0));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Figures {
        idle_kb,
        after_kb: tree_rss_kb(pid),
        first: p50(first),
        done: p50(done),
    })
}

async fn spawn_pincer(bin: &Path, fake: &FakeProvider, tg: &FakeTelegram) -> Result<Server> {
    let text = format!(
        "{}{}",
        fake.gateway_toml("fakeoai", "fake-model", ""),
        tg.gateway_toml(&format!("allow_from = [\"{OWNER}\"]\npoll_timeout_s = 30"))
    )
    // The test fakes' short poll is for tests; the bench polls as a board would.
    .replace("poll_timeout_s = 2\n", "");
    crate::agent::spawn_pincer_with(bin, &text, &[]).await
}

async fn spawn_openclaw(
    node: &Path,
    mjs: &Path,
    fake: &FakeProvider,
    tg: &FakeTelegram,
) -> Result<Server> {
    let dir = temp_dir("tg-openclaw");
    let port = free_port()?;
    let mut config = openclaw_headless::config(port, TOKEN, false);
    let models = fake.openclaw_config("fakeoai", "fake-model");
    for k in ["models", "agents", "tools"] {
        config[k] = models[k].clone();
    }
    config["channels"] = json!({ "telegram": { "enabled": true, "botToken": fake_telegram::TOKEN,
        "apiRoot": tg.api_root(), "dmPolicy": "allowlist", "allowFrom": [OWNER.to_string()] } });
    std::fs::write(dir.join("openclaw.json"), config.to_string())?;
    // Channels on: the headless environment without OPENCLAW_SKIP_CHANNELS.
    let env: Vec<_> = openclaw_headless::env(&dir)
        .into_iter()
        .filter(|(k, _)| *k != "OPENCLAW_SKIP_CHANNELS")
        .collect();
    let log = std::fs::File::create(dir.join("openclaw.log"))?;
    let child = Command::new(node)
        .arg(mjs)
        .args(["gateway", "run"])
        .envs(env)
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(Server {
        kind: Kind::OpenClaw,
        child,
        url: format!("ws://127.0.0.1:{port}"),
        dir: Some(dir),
        stopped: false,
    })
}

/// Runs the Telegram figures and prints them as a markdown table.
pub async fn run(
    gateway: &Path,
    openclaw: Option<(PathBuf, PathBuf)>,
    samples: usize,
) -> Result<()> {
    eprintln!("pincer-gateway…");
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let server = spawn_pincer(gateway, &fake, &tg).await?;
    let ours = measure(&server, &fake, &tg, samples).await;
    server.stop().await;
    let ours = ours?;
    let theirs = match openclaw {
        Some((node, mjs)) if node.exists() && mjs.exists() => {
            eprintln!("OpenClaw…");
            let fake = FakeProvider::start(Dialect::Completions).await;
            let tg = FakeTelegram::start().await;
            let server = spawn_openclaw(&node, &mjs, &fake, &tg).await?;
            let f = measure(&server, &fake, &tg, samples.min(10)).await;
            if f.is_err() {
                if let Some(d) = &server.dir {
                    let log = std::fs::read_to_string(d.join("openclaw.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!(
                        "OpenClaw's log (end):\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                    let calls: Vec<String> = tg
                        .calls()
                        .iter()
                        .map(|c| format!("{} {}", c.method, c.params))
                        .collect();
                    eprintln!("Bot API calls:\n{}", calls.join("\n"));
                }
            }
            server.stop().await;
            Some(f?)
        }
        _ => None,
    };
    let col = |f: &dyn Fn(&Figures) -> String| theirs.as_ref().map_or("skipped".into(), f);
    println!(
        "pincer-bench telegram, {}, {samples} DMs (OpenClaw: {}), provider: 4 deltas 20 ms apart, fake Bot API on loopback\n",
        crate::utc_now(),
        samples.min(10)
    );
    println!("| figure | pincer-gateway | OpenClaw 2026.9.6 |");
    println!("|---|---|---|");
    println!(
        "| RSS, bot polling, idle | {} | {} |",
        mb(ours.idle_kb),
        col(&|t| mb(t.idle_kb))
    );
    println!(
        "| RSS after the turns | {} | {} |",
        mb(ours.after_kb),
        col(&|t| mb(t.after_kb))
    );
    println!(
        "| update → first sendMessage, p50 | {} | {} |",
        ms(ours.first),
        col(&|t| ms(t.first))
    );
    println!(
        "| update → reply complete, p50 | {} | {} |",
        ms(ours.done),
        col(&|t| ms(t.done))
    );
    Ok(())
}
