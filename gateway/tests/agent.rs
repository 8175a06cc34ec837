//! The agent runtime through the real gateway binary, against a fake provider on loopback that
//! speaks each dialect's real streaming format (`tests/support/fake_provider.rs`): text turns,
//! tool turns, abort, idempotent retries, `agent` / `agent.wait`, a restart with history
//! intact, and every provider failure ending the run with a message while the gateway keeps
//! serving.

#[path = "../../tests/support/chat.rs"]
mod chat;
#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_provider::{Dialect, FakeProvider, Reply};
use pincer_client::session::Session;
use pincer_gateway::operator::call::{session, CallOptions};
use serde_json::{json, Value};
use support::{Gateway, TOKEN};

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pincer-agent-{tag}-{}-{}",
        std::process::id(),
        pincer_os::uuid_v4()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gateway whose default model is the fake's (`fake/fake-model`); `extra` goes under
/// `[agent]`. Without a fake: no model at all.
fn start(dir: &Path, fake: Option<&FakeProvider>, extra: &str) -> Gateway {
    let cfg = match fake {
        Some(f) => f.gateway_toml("fake", "fake-model", extra),
        None => format!("[agent]\n{extra}\n"),
    };
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let p = path.to_string_lossy().into_owned();
    Gateway::start_in(&dir.join("state"), TOKEN, &["--config", &p])
}

fn opts(gw: &Gateway) -> CallOptions {
    let mut o = CallOptions::new(
        format!("ws://127.0.0.1:{}", gw.port),
        gw.dir.join("operator"),
    );
    o.token = Some(TOKEN.into());
    o.timeout = Duration::from_secs(10);
    o
}

async fn connect(gw: &Gateway) -> Session {
    session(&opts(gw)).await.expect("operator session")
}

/// A raw-frame operator with a device key (paired silently on loopback) holding `scope`.
async fn raw_operator(gw: &Gateway, scope: &'static str) -> (support::Client, Value) {
    let (c, hello) = support::Connect {
        key: Some(support::new_key()),
        scopes: vec![scope],
        ..Default::default()
    }
    .run(gw)
    .await;
    assert_eq!(hello["ok"], true, "{hello}");
    (c, hello)
}

/// The `chat` events of `run_id` until its terminal state (within 30 s).
async fn chat_until_done(s: &mut Session, run_id: &str) -> Vec<Value> {
    chat::until_done(s, run_id, Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_text_turn_streams_in_every_dialect() {
    for d in [Dialect::Completions, Dialect::Responses, Dialect::Anthropic] {
        let fake = FakeProvider::start(d).await;
        fake.push(Reply::Text {
            chunks: vec!["Hello".into(), ", board".into(), " owner.".into()],
            delay_ms: 100,
        });
        let dir = temp("text");
        let gw = start(&dir, Some(&fake), "");
        let mut s = connect(&gw).await;
        let (r, id) = chat::send(&mut s, "main", "Hi there").await;
        assert_eq!(r["runId"], id.as_str(), "{d:?}: {r}");
        assert_eq!(r["status"], "started");
        assert_eq!(r["messageSeq"], 1);
        let events = chat_until_done(&mut s, &id).await;
        let last = events.last().unwrap();
        assert_eq!(last["state"], "final", "{d:?}: {events:?}");
        assert_eq!(chat::text_of(last), "Hello, board owner.", "{d:?}");
        assert_eq!(last["stopReason"], "stop");
        let deltas: Vec<&Value> = events.iter().filter(|e| e["state"] == "delta").collect();
        assert!(!deltas.is_empty(), "{d:?}: no delta");
        // deltaText pieces add up to the cumulative text; seqs never go back; the final reuses
        // the last delta's seq.
        let joined: String = deltas
            .iter()
            .map(|e| e["deltaText"].as_str().unwrap())
            .collect();
        assert_eq!(joined, "Hello, board owner.", "{d:?}");
        assert!(deltas
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
        assert_eq!(last["seq"], deltas.last().unwrap()["seq"]);
        // What the provider was asked: the dialect's path, the key, the user text with its
        // timestamp prefix, streaming.
        let req = &fake.requests()[0];
        assert_eq!(req.path, d.path());
        assert_eq!(req.body["stream"], true);
        assert_eq!(req.body["model"], "fake-model");
        assert!(
            req.body.to_string().contains("] Hi there"),
            "{d:?}: {}",
            req.body
        );
        match d {
            Dialect::Anthropic => assert_eq!(req.header("x-api-key"), Some("test-key")),
            _ => assert_eq!(req.header("authorization"), Some("Bearer test-key")),
        }
        // History: the user turn and the reply, oldest first.
        let h = s
            .request("chat.history", &json!({ "sessionKey": "agent:main:main" }))
            .await
            .unwrap();
        let msgs = h["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{h}");
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"][0]["text"], "Hello, board owner.");
        assert_eq!(h["totalMessages"], 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn a_tool_turn_calls_nodes_and_answers_with_the_result() {
    for d in [Dialect::Completions, Dialect::Responses, Dialect::Anthropic] {
        let fake = FakeProvider::start(d).await;
        fake.push(Reply::ToolCall {
            id: "call_1a6c0b9a".into(),
            name: "nodes".into(),
            arguments: r#"{"action":"status"}"#.into(),
            preamble: Some("Let me check.".into()),
        });
        fake.push(Reply::Text {
            chunks: vec!["No nodes are connected.".into()],
            delay_ms: 0,
        });
        let dir = temp("tool");
        let gw = start(&dir, Some(&fake), "");
        let mut s = connect(&gw).await;
        let (_, id) = chat::send(&mut s, "main", "Which boards do I have?").await;
        let events = chat_until_done(&mut s, &id).await;
        let last = events.last().unwrap();
        assert_eq!(last["state"], "final", "{d:?}: {events:?}");
        assert_eq!(chat::text_of(last), "No nodes are connected.", "{d:?}");
        let reqs = fake.wait_requests(2, Duration::from_secs(5)).await;
        // The second request carries the call and its result (the node list).
        let second = reqs[1].body.to_string();
        assert!(second.contains("\\\"nodes\\\""), "{d:?}: {second}");
        assert!(
            second.contains("call1a6c0b9a") || second.contains("call_1a6c0b9a"),
            "{d:?}"
        );
        let h = s
            .request("chat.history", &json!({ "sessionKey": "main" }))
            .await
            .unwrap();
        let roles: Vec<&str> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["user", "assistant", "toolResult", "assistant"],
            "{d:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn abort_stops_the_stream_and_keeps_the_partial_reply() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    fake.push(Reply::Stall);
    let dir = temp("abort");
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let (_, id) = chat::send(&mut s, "main", "Tell me a long story").await;
    // Wait for the first delta (the provider is streaming), then abort.
    loop {
        let e = s.next_event().await.unwrap();
        if e.event.as_str() == "chat" && e.payload.as_ref().unwrap()["state"] == "delta" {
            break;
        }
    }
    let r = s
        .request("chat.abort", &json!({ "sessionKey": "main", "runId": id }))
        .await
        .unwrap();
    assert_eq!(r["aborted"], true, "{r}");
    assert_eq!(r["runIds"], json!([id]));
    // `chat aborted` came before the response (it is queued already).
    let events = chat_until_done(&mut s, &id).await;
    let last = events.last().unwrap();
    assert_eq!(last["state"], "aborted", "{events:?}");
    assert_eq!(last["stopReason"], "rpc");
    // The provider saw the client go away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.disconnects() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream was not closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What had streamed stays in the history, marked as aborted.
    let h = s
        .request("chat.history", &json!({ "sessionKey": "main" }))
        .await
        .unwrap();
    let last = h["messages"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["role"], "assistant", "{h}");
    assert_eq!(last["stopReason"], "aborted", "{last}");
    assert_eq!(last["content"][0]["text"], "Hel", "{last}");
    // The next turn works.
    let (_, id2) = chat::send(&mut s, "main", "Short one then").await;
    let ev = chat_until_done(&mut s, &id2).await;
    assert_eq!(ev.last().unwrap()["state"], "final");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_repeated_idempotency_key_never_starts_a_second_run() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    // The first run streams until it is aborted: it is in flight for as long as the test
    // needs, however slow the machine.
    fake.push(Reply::Stall);
    let dir = temp("idem");
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let params = json!({ "sessionKey": "main", "message": "count", "idempotencyKey": "k-1" });
    let r = s.request("chat.send", &params).await.unwrap();
    assert_eq!(r["status"], "started");
    let again = s.request("chat.send", &params).await.unwrap();
    assert_eq!(again, json!({ "runId": "k-1", "status": "in_flight" }));
    // A different message with the same key is a conflict, in flight or finished.
    let clash = json!({ "sessionKey": "main", "message": "not that", "idempotencyKey": "k-1" });
    let e = s.request("chat.send", &clash).await.unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    s.request(
        "chat.abort",
        &json!({ "sessionKey": "main", "runId": "k-1" }),
    )
    .await
    .unwrap();
    chat_until_done(&mut s, "k-1").await;
    let after = s.request("chat.send", &params).await.unwrap();
    assert_eq!(after, json!({ "runId": "k-1", "status": "aborted" }));
    // A run that finished: its repeat gets the cached answer, no new run.
    let done = json!({ "sessionKey": "main", "message": "say ok", "idempotencyKey": "k-2" });
    s.request("chat.send", &done).await.unwrap();
    chat_until_done(&mut s, "k-2").await;
    let after = s.request("chat.send", &done).await.unwrap();
    assert_eq!(after, json!({ "runId": "k-2", "status": "ok" }));
    let clash = json!({ "sessionKey": "main", "message": "not that", "idempotencyKey": "k-2" });
    let e = s.request("chat.send", &clash).await.unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    assert_eq!(fake.requests().len(), 2, "one provider call per run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One run at a time per session, at most 8 waiting behind it; the 10th is refused.
#[tokio::test]
async fn a_session_queues_at_most_eight_runs_behind_the_running_one() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    fake.push(Reply::Stall);
    let dir = temp("queue");
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    for i in 0..9 {
        let r = s
            .request(
                "chat.send",
                &json!({ "sessionKey": "main", "message": format!("m{i}"), "idempotencyKey": format!("q{i}") }),
            )
            .await
            .unwrap();
        assert_eq!(r["status"], "started", "{i}: {r}");
    }
    let e = s
        .request(
            "chat.send",
            &json!({ "sessionKey": "main", "message": "one too many", "idempotencyKey": "q9" }),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("session busy"), "{e}");
    // Only the running one reached the provider; an abort of the session ends all nine.
    let r = s
        .request("chat.abort", &json!({ "sessionKey": "main" }))
        .await
        .unwrap();
    assert_eq!(r["runIds"].as_array().map(Vec::len), Some(9), "{r}");
    assert_eq!(fake.requests().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn agent_answers_accepted_then_the_final_and_agent_wait_sees_it() {
    let fake = FakeProvider::start(Dialect::Anthropic).await;
    fake.push(Reply::Text {
        chunks: vec!["Done.".into()],
        delay_ms: 0,
    });
    let dir = temp("agentrpc");
    let gw = start(&dir, Some(&fake), "");
    // The raw client: both responses arrive on the same request id.
    let (mut c, hello) = raw_operator(&gw, "operator.write").await;
    assert_eq!(
        hello["payload"]["snapshot"]["sessionDefaults"]["mainSessionKey"],
        "agent:main:main"
    );
    c.send(&json!({ "type": "req", "id": "a1", "method": "agent",
        "params": { "message": "go", "idempotencyKey": "run-a1", "sessionKey": "agent:main:rpc" } }))
        .await;
    let first = c.response("a1").await;
    assert_eq!(first["payload"]["status"], "accepted", "{first}");
    assert_eq!(first["payload"]["runId"], "run-a1");
    assert_eq!(first["payload"]["sessionKey"], "agent:main:rpc");
    let second = c.response("a1").await;
    assert_eq!(second["ok"], true, "{second}");
    assert_eq!(second["payload"]["status"], "ok");
    assert_eq!(second["payload"]["summary"], "completed");
    assert_eq!(second["payload"]["result"]["payloads"][0]["text"], "Done.");
    let w = c
        .call(
            "w1",
            "agent.wait",
            json!({ "runId": "run-a1", "timeoutMs": 1000 }),
        )
        .await;
    assert_eq!(w["payload"]["status"], "ok", "{w}");
    let unknown = c
        .call(
            "w2",
            "agent.wait",
            json!({ "runId": "nope", "timeoutMs": 200 }),
        )
        .await;
    assert_eq!(
        unknown["payload"],
        json!({ "runId": "nope", "status": "timeout" })
    );
    // A repeat of the finished run: only the final, at once.
    c.send(&json!({ "type": "req", "id": "a2", "method": "agent",
        "params": { "message": "go", "idempotencyKey": "run-a1", "sessionKey": "agent:main:rpc" } }))
        .await;
    let again = c.response("a2").await;
    assert_eq!(again["payload"]["summary"], "completed", "{again}");
    assert_eq!(fake.requests().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn history_survives_a_restart_and_sessions_are_listed() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("restart");
    {
        let gw = start(&dir, Some(&fake), "");
        let mut s = connect(&gw).await;
        for m in ["first", "second"] {
            let (_, id) = chat::send(&mut s, "agent:main:notes", m).await;
            assert_eq!(
                chat_until_done(&mut s, &id).await.last().unwrap()["state"],
                "final"
            );
        }
        let p = s
            .request(
                "sessions.patch",
                &json!({ "key": "agent:main:notes", "label": "Notes" }),
            )
            .await
            .unwrap();
        assert_eq!(p["entry"]["label"], "Notes", "{p}");
        // Killed, not stopped: nothing gets a chance to flush.
        drop(s);
        drop(gw);
    }
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let h = s
        .request(
            "chat.history",
            &json!({ "sessionKey": "agent:main:notes", "limit": 3 }),
        )
        .await
        .unwrap();
    assert_eq!(h["totalMessages"], 4, "{h}");
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
    assert_eq!(h["hasMore"], true);
    assert_eq!(h["nextOffset"], 3);
    let older = s
        .request(
            "chat.history",
            &json!({ "sessionKey": "agent:main:notes", "limit": 3, "offset": 3 }),
        )
        .await
        .unwrap();
    let first = &older["messages"][0];
    assert!(
        first["content"][0]["text"].as_str().unwrap() == "first",
        "{older}"
    );
    // A delta cursor from this page: nothing new yet, then the next turn's two entries.
    let cursor = h["deltaCursor"].as_str().expect("deltaCursor").to_owned();
    let d = s
        .request(
            "chat.history",
            &json!({ "sessionKey": "agent:main:notes", "cursor": cursor }),
        )
        .await
        .unwrap();
    assert_eq!(
        (d["kind"].as_str(), d["messages"].as_array().map(Vec::len)),
        (Some("delta"), Some(0)),
        "{d}"
    );
    let list = s.request("sessions.list", &json!({})).await.unwrap();
    let row = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "agent:main:notes")
        .expect("listed");
    assert_eq!(row["label"], "Notes");
    // The next turn's request carries the earlier turns.
    let (_, id) = chat::send(&mut s, "agent:main:notes", "third").await;
    chat_until_done(&mut s, &id).await;
    let last = fake.requests().last().unwrap().body.to_string();
    assert!(
        last.contains("] first") && last.contains("] second"),
        "{last}"
    );
    // The cursor now catches up with that turn: two envelopes, as the reference pages them.
    let d = s
        .request(
            "chat.history",
            &json!({ "sessionKey": "agent:main:notes", "cursor": cursor }),
        )
        .await
        .unwrap();
    let m = d["messages"].as_array().expect("messages");
    assert_eq!((d["kind"].as_str(), m.len()), (Some("delta"), 2), "{d}");
    assert_eq!(m[0]["message"]["content"][0]["text"], "third", "{d}");
    assert_eq!(m[1]["message"]["role"], "assistant", "{d}");
    assert_eq!(m[0]["sessionKey"], "agent:main:notes");
    assert!(m[1]["messageSeq"].as_u64() > m[0]["messageSeq"].as_u64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sessions.messages.subscribe {key}` gets that session's new entries as `session.message`,
/// `sessions.subscribe` gets `sessions.changed`; another session's entries and a connection
/// that did not subscribe get nothing.
#[tokio::test]
async fn subscribers_hear_of_new_messages_and_changed_sessions() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("watch");
    let gw = start(&dir, Some(&fake), "");
    let (mut watcher, _) = raw_operator(&gw, "operator.read").await;
    let (mut bystander, _) = raw_operator(&gw, "operator.read").await;
    let r = watcher
        .call(
            "w1",
            "sessions.messages.subscribe",
            json!({ "key": "agent:main:watched" }),
        )
        .await;
    assert_eq!(r["payload"]["subscribed"], true, "{r}");
    assert_eq!(r["payload"]["key"], "agent:main:watched");
    let r = watcher.call("w2", "sessions.subscribe", json!({})).await;
    assert_eq!(r["payload"]["subscribed"], true, "{r}");
    let mut s = connect(&gw).await;
    for (key, text) in [
        ("agent:main:other", "elsewhere"),
        ("agent:main:watched", "hello"),
    ] {
        fake.push(Reply::Text {
            chunks: vec![format!("re: {text}")],
            delay_ms: 0,
        });
        let (_, id) = chat::send(&mut s, key, text).await;
        chat_until_done(&mut s, &id).await;
    }
    let mut messages = Vec::new();
    let mut changed = Vec::new();
    while messages.len() < 2 {
        let Some(support::Next::Frame(f)) = watcher.next_within(10.0).await else {
            panic!("no session.message: got {messages:?}");
        };
        match f["event"].as_str() {
            Some("session.message") => messages.push(f["payload"].clone()),
            Some("sessions.changed") => changed.push(f["payload"].clone()),
            _ => {}
        }
    }
    assert!(
        messages
            .iter()
            .all(|m| m["sessionKey"] == "agent:main:watched"),
        "{messages:?}"
    );
    assert_eq!(messages[0]["message"]["content"][0]["text"], "hello");
    assert_eq!(messages[1]["message"]["content"][0]["text"], "re: hello");
    assert_eq!(messages[1]["session"]["key"], "agent:main:watched");
    assert!(
        changed
            .iter()
            .any(|c| c["sessionKey"] == "agent:main:other" && c["reason"] == "send"),
        "sessions.changed covers every session: {changed:?}"
    );
    // The bystander subscribed to nothing.
    while let Some(support::Next::Frame(f)) = bystander.next_within(0.5).await {
        let e = f["event"].as_str().unwrap_or("");
        assert!(e != "session.message" && e != "sessions.changed", "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each failure ends the run with a `chat` error that says what happened, and the gateway
/// keeps serving (the next turn works).
#[tokio::test]
async fn provider_failures_are_messages_not_hangs() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("fail");
    let gw = start(&dir, Some(&fake), "stream_idle_ms = 1000");
    let mut s = connect(&gw).await;
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Status {
                code: 401,
                body: r#"{"error":{"message":"Incorrect API key provided"}}"#.into(),
                retry_after: None,
            },
            "refused the API key (HTTP 401)",
        ),
        (
            Reply::Status {
                code: 500,
                body: r#"{"error":{"message":"boom"}}"#.into(),
                retry_after: None,
            },
            "failed (HTTP 500)",
        ),
        (Reply::Malformed, "malformed"),
        (Reply::Truncated, "ended before the model finished"),
        (Reply::Stall, "sent nothing for 1 s"),
    ];
    for (reply, want) in cases {
        fake.push(reply.clone());
        let (_, id) = chat::send(&mut s, "main", "hello?").await;
        let events = chat_until_done(&mut s, &id).await;
        let last = events.last().unwrap();
        assert_eq!(last["state"], "error", "{reply:?}: {events:?}");
        let msg = last["errorMessage"].as_str().unwrap();
        assert!(msg.contains(want), "{reply:?}: {msg}");
        assert!(msg.contains("\"fake\""), "names the provider: {msg}");
        // A reload still says why there is no answer, and the list marks the session.
        let h = s
            .request("chat.history", &json!({ "sessionKey": "main" }))
            .await
            .unwrap();
        let last = h["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "assistant", "{last}");
        assert_eq!(last["stopReason"], "error", "{last}");
        assert!(last.to_string().contains(want), "{last}");
        let l = s.request("sessions.list", &json!({})).await.unwrap();
        let row = l["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "agent:main:main")
            .unwrap()
            .clone();
        assert_eq!(row["status"], "failed", "{row}");
        assert_eq!(row["lastRunId"], id.as_str(), "{row}");
        assert!(
            row["lastRunError"].as_str().unwrap().contains(want),
            "{row}"
        );
    }
    // 429 with retry-after: retried, then answered.
    fake.push(Reply::Status {
        code: 429,
        body: r#"{"error":{"message":"slow down"}}"#.into(),
        retry_after: Some(1),
    });
    fake.push(Reply::Text {
        chunks: vec!["after the wait".into()],
        delay_ms: 0,
    });
    let before = fake.requests().len();
    let (_, id) = chat::send(&mut s, "main", "again").await;
    let events = chat_until_done(&mut s, &id).await;
    assert_eq!(
        chat::text_of(events.last().unwrap()),
        "after the wait",
        "{events:?}"
    );
    assert_eq!(fake.requests().len(), before + 2);
    // The error notes were for people: the model saw the questions, none of the failures.
    let sent = fake.requests().last().unwrap().body.to_string();
    assert!(sent.contains("hello?") && sent.contains("again"), "{sent}");
    assert!(
        !sent.contains("HTTP 401") && !sent.contains("malformed"),
        "{sent}"
    );
    let l = s.request("sessions.list", &json!({})).await.unwrap();
    assert_eq!(l["sessions"][0]["status"], "idle", "{l}");
    assert!(l["sessions"][0].get("lastRunError").is_none(), "{l}");
    // A provider that is not there at all.
    drop(fake);
    let (_, id) = chat::send(&mut s, "main", "anyone?").await;
    let events = chat_until_done(&mut s, &id).await;
    let msg = events.last().unwrap()["errorMessage"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("unreachable"), "{msg}");
    let h = s.request("health", &json!({})).await.unwrap();
    assert_eq!(h["ok"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_a_model_the_error_names_the_config_keys() {
    let dir = temp("nomodel");
    let gw = start(&dir, None, "");
    let mut s = connect(&gw).await;
    let (r, id) = chat::send(&mut s, "main", "hello").await;
    assert_eq!(r["status"], "started");
    let events = chat_until_done(&mut s, &id).await;
    let last = events.last().unwrap();
    assert_eq!(last["state"], "error");
    let msg = last["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("[agent] model") && msg.contains("[models.providers."),
        "{msg}"
    );
    let m = s.request("models.list", &json!({})).await.unwrap();
    assert_eq!(m["models"], json!([]));
    // Params are checked as the reference checks them, and worded as it words them.
    let e = s
        .request(
            "chat.send",
            &json!({ "sessionKey": "main", "message": "x" }),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid chat.send params: must have required property 'idempotencyKey'"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// kill -9 while a reply streams: the run's partial reply is lost, nothing else is, and the
/// session carries on after the restart.
#[tokio::test]
async fn kill_9_mid_run_loses_only_the_partial_reply() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    fake.push(Reply::Text {
        chunks: vec!["kept".into()],
        delay_ms: 0,
    });
    fake.push(Reply::Stall);
    let dir = temp("kill9");
    {
        let gw = start(&dir, Some(&fake), "");
        let mut s = connect(&gw).await;
        let (_, id) = chat::send(&mut s, "main", "first").await;
        chat_until_done(&mut s, &id).await;
        let (_, id) = chat::send(&mut s, "main", "second").await;
        loop {
            let e = s.next_event().await.unwrap();
            let p = e.payload.unwrap_or_default();
            if e.event.as_str() == "chat" && p["runId"] == id.as_str() && p["state"] == "delta" {
                break;
            }
        }
        drop(gw); // SIGKILL while the second reply streams
    }
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let h = s
        .request("chat.history", &json!({ "sessionKey": "main" }))
        .await
        .unwrap();
    let texts: Vec<String> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts.len(), 3, "{h}");
    assert!(
        texts[0] == "first" && texts[1] == "kept" && texts[2] == "second",
        "history shows what was typed: {texts:?}"
    );
    let (_, id) = chat::send(&mut s, "main", "third").await;
    let ev = chat_until_done(&mut s, &id).await;
    assert_eq!(ev.last().unwrap()["state"], "final", "{ev:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scheduled agent turn runs on time, is recorded, and is still scheduled after a restart;
/// `wake` reaches the next turn; `send` without channels is refused as the reference does.
#[tokio::test]
async fn cron_jobs_run_and_survive_a_restart() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("cron");
    let job_id;
    {
        let gw = start(&dir, Some(&fake), "");
        let mut s = connect(&gw).await;
        let job = s
            .request(
                "cron.add",
                &json!({ "name": "water the plants", "schedule": { "kind": "every", "everyMs": 1500 },
                    "sessionTarget": "isolated", "wakeMode": "now",
                    "payload": { "kind": "agentTurn", "message": "time to water the plants" } }),
            )
            .await
            .expect("cron.add");
        job_id = job["id"].as_str().unwrap().to_owned();
        assert!(job["nextRunAtMs"].as_u64().is_some(), "{job}");
        // It fires: the provider is asked, the run is recorded.
        let reqs = fake.wait_requests(1, Duration::from_secs(10)).await;
        assert!(reqs[0]
            .body
            .to_string()
            .contains("time to water the plants"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let runs = s
                .request("cron.runs", &json!({ "id": job_id }))
                .await
                .unwrap();
            if runs["total"].as_u64() >= Some(1) {
                assert_eq!(runs["entries"][0]["status"], "ok", "{runs}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no run recorded: {runs}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let st = s.request("cron.status", &json!({})).await.unwrap();
        assert_eq!(st["jobs"], 1, "{st}");
        // A wake is in front of the model at the next turn.
        let w = s
            .request(
                "wake",
                &json!({ "mode": "next-heartbeat", "text": "the door bell rang" }),
            )
            .await
            .unwrap();
        assert_eq!(w, json!({ "ok": true }));
        let before = fake.requests().len();
        let (_, id) = chat::send(&mut s, "main", "anything new?").await;
        chat_until_done(&mut s, &id).await;
        let asked: Vec<String> = fake.requests()[before..]
            .iter()
            .map(|r| r.body.to_string())
            .collect();
        assert!(
            asked
                .iter()
                .any(|b| b.contains("System: the door bell rang") && b.contains("anything new?")),
            "{asked:?}"
        );
        let e = s
            .request(
                "send",
                &json!({ "to": "+15550001111", "message": "hi", "idempotencyKey": "s1" }),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Channel is required"), "{e}");
        drop(s);
        drop(gw);
    }
    // After a restart the job is still there and fires again.
    let n = fake.requests().len();
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let list = s.request("cron.list", &json!({})).await.unwrap();
    assert_eq!(list["jobs"][0]["id"], job_id.as_str(), "{list}");
    fake.wait_requests(n + 1, Duration::from_secs(10)).await;
    let r = s
        .request("cron.remove", &json!({ "id": job_id }))
        .await
        .unwrap();
    assert_eq!(r, json!({ "ok": true, "removed": true }));
    let bad = s
        .request(
            "cron.add",
            &json!({ "name": "x", "schedule": { "kind": "cron", "expr": "0 7 * * *" },
                "sessionTarget": "main", "wakeMode": "now", "payload": { "kind": "systemEvent", "text": "x" } }),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("not supported"), "{bad}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `automations` and `message` tools: the model schedules a job and posts to a session.
#[tokio::test]
async fn the_model_schedules_a_job_and_posts_to_a_session() {
    let fake = FakeProvider::start(Dialect::Anthropic).await;
    fake.push(Reply::ToolCall {
        id: "toolu_01".into(),
        name: "automations".into(),
        arguments: json!({ "action": "add", "job": { "name": "morning photo",
            "schedule": { "kind": "every", "everyMs": 86_400_000 }, "sessionTarget": "main",
            "wakeMode": "now", "payload": { "kind": "agentTurn", "message": "take a photo" } } })
        .to_string(),
        preamble: None,
    });
    fake.push(Reply::ToolCall {
        id: "toolu_02".into(),
        name: "message".into(),
        arguments: json!({ "action": "send", "target": "agent:main:notes", "message": "Photo job set up." })
            .to_string(),
        preamble: None,
    });
    fake.push(Reply::Text {
        chunks: vec!["Scheduled.".into()],
        delay_ms: 0,
    });
    let dir = temp("tools");
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let (_, id) = chat::send(&mut s, "main", "Take a photo every morning and note it").await;
    let ev = chat_until_done(&mut s, &id).await;
    assert_eq!(chat::text_of(ev.last().unwrap()), "Scheduled.", "{ev:?}");
    let jobs = s.request("cron.list", &json!({})).await.unwrap();
    assert_eq!(jobs["jobs"][0]["name"], "morning photo", "{jobs}");
    let h = s
        .request("chat.history", &json!({ "sessionKey": "agent:main:notes" }))
        .await
        .unwrap();
    assert_eq!(
        h["messages"][0]["content"][0]["text"], "Photo job set up.",
        "{h}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node that goes away while the model's tool call waits on it: the call fails at once with
/// what happened, the model hears it, and the run ends normally.
#[tokio::test]
async fn a_node_that_disappears_mid_tool_call_fails_the_call_not_the_run() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("nodegone");
    let gw = start(&dir, Some(&fake), "");
    // A node (a raw client) that declares location.get and will hang up on the invoke.
    let (mut node, node_id) =
        support::node_client(&gw, "gone-node", &["location"], &["location.get"]).await;
    fake.push(Reply::ToolCall {
        id: "call_gone".into(),
        name: "nodes".into(),
        arguments: json!({ "action": "location_get", "node": node_id }).to_string(),
        preamble: None,
    });
    fake.push(Reply::Text {
        chunks: vec!["The board went offline.".into()],
        delay_ms: 0,
    });
    let mut s = connect(&gw).await;
    let (_, id) = chat::send(&mut s, "main", "Where is the board?").await;
    // The invoke reaches the node; it hangs up instead of answering.
    node.event("node.invoke.request", 10.0)
        .await
        .expect("the invoke reached the node");
    drop(node);
    let ev = chat_until_done(&mut s, &id).await;
    assert_eq!(
        chat::text_of(ev.last().unwrap()),
        "The board went offline.",
        "{ev:?}"
    );
    let reqs = fake.wait_requests(2, Duration::from_secs(5)).await;
    let tool = reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .expect("a tool result");
    let text = tool["content"].as_str().unwrap_or("");
    assert!(
        text.contains("error") && text.contains("disconnected"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `agent` with `/new` or `/reset` needs `operator.admin`, as in the reference, and starts the
/// session over.
#[tokio::test]
async fn agent_new_needs_admin_and_starts_the_session_over() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let dir = temp("slashnew");
    let gw = start(&dir, Some(&fake), "");
    let mut s = connect(&gw).await;
    let (_, id) = chat::send(&mut s, "agent:main:slash", "remember this").await;
    chat_until_done(&mut s, &id).await;
    // A writer without admin is refused.
    let (mut c, _) = raw_operator(&gw, "operator.write").await;
    let r = c
        .call(
            "n1",
            "agent",
            json!({ "message": "/new", "idempotencyKey": "n1", "sessionKey": "agent:main:slash" }),
        )
        .await;
    assert_eq!(
        r["error"]["message"], "missing scope: operator.admin",
        "{r}"
    );
    // The admin's /new resets it: history is the reset marker alone.
    let (mut a, _) = raw_operator(&gw, "operator.admin").await;
    let r = a
        .call(
            "n2",
            "agent",
            json!({ "message": "/NEW", "idempotencyKey": "n2", "sessionKey": "agent:main:slash" }),
        )
        .await;
    assert_eq!(r["payload"]["status"], "ok", "{r}");
    let h = s
        .request("chat.history", &json!({ "sessionKey": "agent:main:slash" }))
        .await
        .unwrap();
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{h}");
    assert_eq!(msgs[0]["__openclaw"]["kind"], "reset");
    let _ = std::fs::remove_dir_all(&dir);
}
