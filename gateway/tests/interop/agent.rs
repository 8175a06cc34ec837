//! The agent surface against the real OpenClaw, with one scripted fake provider on loopback
//! (`tests/support/fake_provider.rs`, the chat-completions stream):
//!
//! * the same scripted turns through the real OpenClaw gateway and through pincer-gateway: a
//!   client sees the same sequence of chat states and the same final text from both;
//! * the OpenClaw CLI's `openclaw agent --message` (a turn through the gateway's `agent`
//!   method) and `openclaw gateway call chat.history` against pincer-gateway.
//!
//! Differences allowed, as the reference notes list them as incidental: how many deltas a
//! reply is cut into (the 75 ms pacing merges them by timing), the seq numbers, the status
//! phases' count, and the text the reference adds to the user turn (its envelope) or the system
//! prompt. One of ours: text a model sends before a tool call streams as a chat delta that the
//! answer then replaces (`replace: true`), where the reference shows it only as a `preamble`
//! item; collapsed to states, the sequences are the same.

#[path = "../../../tests/support/fake_provider.rs"]
mod fake_provider;

use std::time::Duration;

use fake_provider::{Dialect, FakeProvider, Reply};
use pincer_client::session::Session;
use pincer_gateway::operator::call::{session, CallOptions};
use serde_json::{json, Value};

use crate::support::openclaw::{free_port, json_of, reference, show, TOKEN};
use crate::support::Gateway;

fn script(fake: &FakeProvider) {
    fake.push(Reply::Text {
        chunks: vec!["Hello".into(), ", board".into(), " owner.".into()],
        delay_ms: 100,
    });
    fake.push(Reply::ToolCall {
        id: "call_1a6c0b9a".into(),
        name: "nodes".into(),
        arguments: r#"{"action":"status"}"#.into(),
        preamble: None,
    });
    fake.push(Reply::Text {
        chunks: vec!["No".into(), " nodes".into(), " here.".into()],
        delay_ms: 50,
    });
}

/// The chat states of one run, consecutive repeats collapsed, and its final text.
async fn turn(s: &mut Session, key: &str, message: &str) -> (Vec<String>, String) {
    let id = pincer_os::uuid_v4();
    let r = s
        .request(
            "chat.send",
            &json!({ "sessionKey": key, "message": message, "idempotencyKey": id }),
        )
        .await
        .expect("chat.send");
    assert_eq!(r["runId"], id.as_str(), "{r}");
    let mut states: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let e = tokio::time::timeout_at(deadline, s.next_event())
            .await
            .unwrap_or_else(|_| panic!("no final within 90 s; states {states:?}"))
            .expect("open");
        let p = e.payload.unwrap_or_default();
        if e.event.as_str() != "chat" || p["runId"] != id.as_str() {
            continue;
        }
        let st = p["state"].as_str().unwrap_or("").to_owned();
        if states.last() != Some(&st) {
            states.push(st.clone());
        }
        if matches!(st.as_str(), "final" | "error" | "aborted") {
            let text = p["message"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            return (states, text);
        }
    }
}

fn opts(url: String, dir: &std::path::Path) -> CallOptions {
    let mut o = CallOptions::new(url, dir.to_owned());
    o.token = Some(TOKEN.into());
    o.timeout = Duration::from_secs(30);
    o
}

#[test]
fn the_same_turns_look_the_same_on_both_gateways() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ours_fake = rt.block_on(FakeProvider::start(Dialect::Completions));
    let theirs_fake = rt.block_on(FakeProvider::start(Dialect::Completions));
    script(&ours_fake);
    script(&theirs_fake);

    let dir = std::env::temp_dir().join(format!("pincer-interop-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nmodel = \"fakeoai/fake-model\"\n\n[models.providers.fakeoai]\nbase_url = \"{}\"\napi = \"openai-completions\"\napi_key = \"k\"\nmodels = [{{ id = \"fake-model\", name = \"Fake Model\" }}]\n",
            ours_fake.base_url()
        ),
    )
    .expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    let gw = Gateway::start_in(&dir.join("pincer"), TOKEN, &["--config", &cfg]);

    let home = dir.join("openclaw");
    let port = free_port();
    let models = json!({
        "models": { "mode": "merge", "providers": { "fakeoai": {
            "baseUrl": theirs_fake.base_url(), "apiKey": "k", "api": "openai-completions",
            "models": [{ "id": "fake-model", "name": "Fake Model" }] } } },
        "agents": { "defaults": { "model": { "primary": "fakeoai/fake-model" } } },
        "tools": { "toolSearch": false }
    });
    let _reference = r.start_gateway_merged(&home, port, false, json!({}), models);

    let results: Vec<Vec<(Vec<String>, String)>> = [
        (gw.url(), dir.join("client-pincer")),
        (
            format!("ws://127.0.0.1:{port}"),
            dir.join("client-openclaw"),
        ),
    ]
    .into_iter()
    .map(|(url, cdir)| {
        rt.block_on(async {
            let mut s = session(&opts(url, &cdir)).await.expect("session");
            vec![
                turn(&mut s, "agent:main:compare", "Hi there").await,
                turn(&mut s, "agent:main:compare", "Which boards do I have?").await,
            ]
        })
    })
    .collect();
    let (ours, theirs) = (&results[0], &results[1]);
    eprintln!("pincer:   {ours:?}\nopenclaw: {theirs:?}");
    assert_eq!(ours[0].1, "Hello, board owner.");
    assert_eq!(ours[1].1, "No nodes here.");
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.1, t.1, "final text");
        assert_eq!(o.0, t.0, "chat states");
    }
    // Both called `nodes` and got a result back (the second request of the tool turn).
    for (who, fake) in [("pincer", &ours_fake), ("openclaw", &theirs_fake)] {
        let reqs: Vec<Value> = fake.requests().into_iter().map(|r| r.body).collect();
        assert!(
            reqs.iter().any(|b| b["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))),
            "{who}: no tool result went back to the model"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_openclaw_cli_runs_a_turn_on_pincer_gateway() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fake = rt.block_on(FakeProvider::start(Dialect::Anthropic));
    fake.push(Reply::Text {
        chunks: vec!["Hi from".into(), " the board.".into()],
        delay_ms: 20,
    });
    let dir = std::env::temp_dir().join(format!("pincer-interop-cli-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nmodel = \"claude/fake-claude\"\n\n[models.providers.claude]\nbase_url = \"{}\"\napi = \"anthropic-messages\"\napi_key = \"k\"\nmodels = [{{ id = \"fake-claude\" }}]\n",
            fake.base_url()
        ),
    )
    .expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    let gw = Gateway::start_in(&dir.join("pincer"), TOKEN, &["--config", &cfg]);
    let url = gw.url();
    let home = dir.join("openclaw-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let config =
        json!({ "gateway": { "mode": "remote", "remote": { "url": url, "token": TOKEN } } });
    std::fs::write(home.join("openclaw.json"), config.to_string()).expect("config");
    let o = r.run(
        &home,
        &[
            "agent",
            "--message",
            "hello",
            "--session-key",
            "agent:main:cli",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Hi from the board."), "{}", show(&o));
    // The turn is in pincer-gateway's history, read back by the CLI.
    let h = json_of(&r.cli(
        &home,
        &url,
        &[
            "gateway",
            "call",
            "chat.history",
            "--params",
            r#"{"sessionKey":"agent:main:cli"}"#,
            "--json",
        ],
    ));
    let msgs = h["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2, "{h}");
    assert_eq!(msgs[1]["content"][0]["text"], "Hi from the board.");
    let _ = std::fs::remove_dir_all(&dir);
}
