//! The Telegram channel through the real gateway binary, against a fake Bot API on loopback
//! (`tests/support/fake_telegram.rs`: the real JSON and multipart wire format, long polling,
//! `{ok:false, error_code, description, parameters}` errors) and the fake model provider:
//! allowed DMs answered, strangers paired by code through the CLI, groups answered only when
//! mentioned, streamed drafts at a bounded edit rate, long replies split in order, API faults
//! (429, 409, 401, dropped connections) and a kill -9 between receiving and replying.

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;
#[path = "../../tests/support/fake_telegram.rs"]
mod fake_telegram;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fake_provider::{Dialect, FakeProvider, Reply};
use fake_telegram::{Call, FakeTelegram, Fault};
use serde_json::{json, Value};
use support::{Gateway, TOKEN};

const WAIT: Duration = Duration::from_secs(30);
/// The owner's Telegram user id (in `allow_from`).
const OWNER: i64 = 4242;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pincer-telegram-{tag}-{}-{}",
        std::process::id(),
        pincer_os::uuid_v4()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gateway with the fake model and `[channels.telegram]` at the fake Bot API (+ `extra`).
fn start(dir: &Path, fake: &FakeProvider, tg: &FakeTelegram, extra: &str) -> Gateway {
    let cfg = format!(
        "{}{}",
        fake.gateway_toml("fake", "fake-model", ""),
        tg.gateway_toml(extra)
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let p = path.to_string_lossy().into_owned();
    Gateway::start_in(&dir.join("state"), TOKEN, &["--config", &p])
}

/// `pincer-gateway <args> --url … --token …` (the operator CLI), its stdout.
fn cli(gw: &Gateway, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pincer-gateway"))
        .args(args)
        .args([
            "--url",
            &format!("ws://127.0.0.1:{}", gw.port),
            "--token",
            TOKEN,
        ])
        .arg("--state-dir")
        .arg(dir.join("cli"))
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(gw: &Gateway, dir: &Path) -> Value {
    let s = cli(gw, dir, &["call", "channels.status", "--json"]);
    serde_json::from_str(&s).unwrap()
}

/// The text the chat shows for each message the bot sent, by message id, last version (after
/// edits); in the order they were sent.
fn chat_texts(calls: &[Call], chat: i64) -> Vec<String> {
    let mut msgs: Vec<(i64, String)> = Vec::new();
    for c in calls {
        if fake_telegram::chat_of(&c.params) != Some(chat) {
            continue;
        }
        let Some(id) = c.message_id else { continue };
        let text = c.params["text"].as_str().unwrap_or("").to_owned();
        let visible = if c.params["parse_mode"] == "HTML" {
            fake_telegram::strip_html(&text).unwrap_or(text)
        } else {
            text
        };
        // Telegram trims a message's surrounding white space.
        let visible = visible.trim().to_owned();
        match msgs.iter_mut().find(|(i, _)| *i == id) {
            Some(slot) => slot.1 = visible,
            None => msgs.push((id, visible)),
        }
    }
    msgs.into_iter().map(|(_, t)| t).collect()
}

/// Waits until the chat's last bot message reads `want` exactly.
async fn wait_reply(tg: &FakeTelegram, chat: i64, want: &str) -> Vec<Call> {
    tg.wait_for(WAIT, |calls| {
        chat_texts(calls, chat).last().is_some_and(|t| t == want)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_dm_is_answered_and_a_stranger_pairs_with_a_code() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("dm");
    let gw = start(&dir, &fake, &tg, &format!("allow_from = [\"tg:{OWNER}\"]"));
    // The bot connects: deleteWebhook, getMe, then polls.
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    let first = tg.calls();
    assert_eq!(
        first[0].method,
        "deleteWebhook",
        "{:?}",
        first.iter().map(|c| &c.method).collect::<Vec<_>>()
    );
    assert!(first.iter().any(|c| c.method == "getMe"));

    // The owner: answered with the model's text; typing while it worked.
    fake.push(Reply::Text {
        chunks: vec!["Hello ".into(), "from **the board**".into(), " <3".into()],
        delay_ms: 50,
    });
    tg.dm(OWNER, "Ann", "hi bot");
    let calls = wait_reply(&tg, OWNER, "Hello from the board <3").await;
    assert!(calls
        .iter()
        .any(|c| c.method == "sendChatAction" && c.params["action"] == "typing"));
    let reqs = fake.wait_requests(1, WAIT).await;
    assert!(
        reqs[0].body.to_string().contains("hi bot"),
        "the message reached the model"
    );
    let final_html = calls
        .iter()
        .rev()
        .find(|c| c.params["parse_mode"] == "HTML")
        .map(|c| c.params["text"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        final_html.contains("<b>the board</b>") && final_html.contains("&lt;3"),
        "{final_html}"
    );

    // A stranger: a code, no turn.
    let before = fake.requests().len();
    tg.dm(777, "Bob", "hello?");
    let calls = tg
        .wait_for(WAIT, |c| {
            chat_texts(c, 777)
                .iter()
                .any(|t| t.contains("pairing code"))
        })
        .await;
    let text = chat_texts(&calls, 777).pop().unwrap();
    let code: String = text
        .split("pairing code is ")
        .nth(1)
        .unwrap()
        .chars()
        .take(8)
        .collect();
    assert_eq!(code.len(), 8);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && !code.contains(['0', 'O', '1', 'I']),
        "{code}"
    );
    assert_eq!(
        fake.requests().len(),
        before,
        "a stranger's message is not a turn"
    );
    // The owner sees it and approves it with the CLI.
    let list = cli(&gw, &dir, &["pairing", "list"]);
    assert!(list.contains(&code) && list.contains("777"), "{list}");
    let st = status(&gw, &dir);
    assert_eq!(
        st["channelAccounts"]["telegram"][0]["pendingPairings"], 1,
        "{st}"
    );
    let out = cli(
        &gw,
        &dir,
        &[
            "pairing",
            "approve",
            "telegram",
            &code.to_lowercase(),
            "--notify",
        ],
    );
    assert!(out.contains("approved telegram sender 777"), "{out}");
    tg.wait_for(WAIT, |c| {
        chat_texts(c, 777).iter().any(|t| t.contains("approved"))
    })
    .await;
    fake.push(Reply::Text {
        chunks: vec!["Welcome, Bob.".into()],
        delay_ms: 0,
    });
    tg.dm(777, "Bob", "am I in?");
    wait_reply(&tg, 777, "Welcome, Bob.").await;

    // channels.status: running, connected, the bot's identity, no error.
    let st = status(&gw, &dir);
    let acc = &st["channelAccounts"]["telegram"][0];
    assert_eq!(st["channelOrder"], json!(["telegram"]), "{st}");
    assert_eq!(acc["running"], true, "{st}");
    assert_eq!(acc["connected"], true, "{st}");
    assert_eq!(acc["bot"]["username"], fake_telegram::BOT_USERNAME, "{st}");
    assert_eq!(acc["lifecycle"], "ready", "{st}");
    assert_eq!(acc["tokenSource"], "config", "{st}");
    assert!(
        acc["lastInboundAt"].is_u64() && acc["lastOutboundAt"].is_u64(),
        "{st}"
    );
    assert_eq!(
        st["channelDetailLabels"]["telegram"], "Telegram Bot",
        "{st}"
    );
    assert!(
        !st.to_string().contains(fake_telegram::TOKEN),
        "no token in the status"
    );

    // Commands: /status names the session and model; /new starts the session afresh, and the
    // model is not called for either.
    let before = fake.requests().len();
    tg.dm(OWNER, "Ann", "/status");
    tg.wait_for(WAIT, |c| {
        chat_texts(c, OWNER).last().is_some_and(|t| {
            t.starts_with("Session agent:main:main") && t.contains("fake/fake-model")
        })
    })
    .await;
    tg.dm(OWNER, "Ann", "/new");
    wait_reply(&tg, OWNER, "New session started.").await;
    assert_eq!(fake.requests().len(), before, "commands are not turns");
    let h = cli(
        &gw,
        &dir,
        &[
            "call",
            "chat.history",
            "--json",
            "--params",
            r#"{"sessionKey":"main"}"#,
        ],
    );
    let h: Value = serde_json::from_str(&h).unwrap();
    assert!(
        !h["messages"].to_string().contains("hi bot"),
        "the old turns are gone from the session: {h}"
    );

    // Outbound: `send` from an operator, and the model's `message` tool.
    let params = json!({ "to": format!("telegram:{OWNER}"), "message": "Dinner is *ready*", "idempotencyKey": "send-1" });
    let r = cli(
        &gw,
        &dir,
        &["call", "send", "--json", "--params", &params.to_string()],
    );
    let r: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(r["channel"], "telegram", "{r}");
    assert_eq!(r["chatId"], OWNER.to_string(), "{r}");
    wait_reply(&tg, OWNER, "Dinner is ready").await;
    // A retry with the same key: the same receipt, no second message.
    let again = cli(
        &gw,
        &dir,
        &["call", "send", "--json", "--params", &params.to_string()],
    );
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["messageId"], r["messageId"], "{again}");
    let dinners = chat_texts(&tg.calls(), OWNER)
        .iter()
        .filter(|t| *t == "Dinner is ready")
        .count();
    assert_eq!(dinners, 1, "sent once");
    fake.push(Reply::ToolCall {
        id: "call_msg".into(),
        name: "message".into(),
        arguments: json!({ "action": "send", "target": "telegram:777", "message": "Ann says hi." })
            .to_string(),
        preamble: None,
    });
    fake.push(Reply::Text {
        chunks: vec!["Told Bob.".into()],
        delay_ms: 0,
    });
    tg.dm(OWNER, "Ann", "tell Bob I say hi");
    wait_reply(&tg, 777, "Ann says hi.").await;
    wait_reply(&tg, OWNER, "Told Bob.").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_only_a_mention_is_answered() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("group");
    let _gw = start(
        &dir,
        &fake,
        &tg,
        "[channels.telegram.groups.\"-100555\"]\nrequire_mention = true",
    );
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    tg.group(-100555, 11, "Cy", "what time is it?");
    tg.group(-100999, 11, "Cy", "@pincer_test_bot not an allowed group");
    fake.push(Reply::Text {
        chunks: vec!["Tea time.".into()],
        delay_ms: 0,
    });
    tg.group(-100555, 11, "Cy", "@pincer_test_bot what time is it?");
    wait_reply(&tg, -100555, "Tea time.").await;
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "only the mention became a turn");
    let body = reqs[0].body.to_string();
    assert!(
        body.contains("Cy: what time is it?"),
        "the sender is named, the mention gone: {body}"
    );
    assert!(chat_texts(&tg.calls(), -100999).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_edited_at_a_bounded_rate_and_long_replies_arrive_whole() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("stream");
    let _gw = start(
        &dir,
        &fake,
        &tg,
        &format!("allow_from = [\"{OWNER}\"]\n[channels.telegram.streaming]\nmode = \"partial\"\nedit_interval_ms = 400"),
    );
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // 40 words over 2 s: a draft, edited as it grows, never faster than every 400 ms.
    let words: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    let want = words.concat().trim_end().to_owned();
    fake.push(Reply::Text {
        chunks: words,
        delay_ms: 50,
    });
    tg.dm(OWNER, "Ann", "stream please");
    let calls = wait_reply(&tg, OWNER, &want).await;
    let edits: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "editMessageText")
        .collect();
    assert!(
        edits.len() >= 2,
        "the draft grew in place: {} edits",
        edits.len()
    );
    let sends = calls.iter().filter(|c| c.method == "sendMessage").count();
    assert_eq!(sends, 1, "one message, edited");
    let draft_edits: Vec<&&Call> = edits
        .iter()
        .filter(|c| c.params["parse_mode"] != "HTML")
        .collect();
    for w in draft_edits.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_millis(390), "edits {gap:?} apart");
    }

    // 10,000 characters: three messages, in order, nothing lost.
    let long: String = (0..1000).map(|i| format!("{i:04}-abcd ")).collect();
    let chunks: Vec<String> = long
        .as_bytes()
        .chunks(500)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    fake.push(Reply::Text {
        chunks,
        delay_ms: 5,
    });
    let before = chat_texts(&tg.calls(), OWNER).len();
    tg.dm(OWNER, "Ann", "a long one");
    let calls = tg
        .wait_for(WAIT, |c| {
            let t = chat_texts(c, OWNER);
            t.len() >= before + 3 && t.last().is_some_and(|l| l.ends_with("0999-abcd"))
        })
        .await;
    let got: Vec<String> = chat_texts(&calls, OWNER).into_iter().skip(before).collect();
    assert!(
        got.iter().all(|t| t.chars().count() <= 4000),
        "{:?}",
        got.iter().map(|t| t.len()).collect::<Vec<_>>()
    );
    let joined: Vec<String> = got
        .iter()
        .flat_map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let sent: Vec<String> = long.split_whitespace().map(str::to_owned).collect();
    assert_eq!(joined, sent, "all 1000 words, in order");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_back_off_and_resume_and_a_bad_token_stops_with_a_clear_status() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("faults");
    // Faults before the first poll: a dropped connection, then a 409.
    tg.fault("getUpdates", Fault::Drop);
    tg.fault("getUpdates", Fault::Error { code: 409, description: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running".into(), retry_after: None });
    let gw = start(
        &dir,
        &fake,
        &tg,
        &format!("allow_from = [\"{OWNER}\"]\n[channels.telegram.streaming]\nmode = \"off\""),
    );
    tg.wait_for(WAIT, |c| {
        c.iter().filter(|c| c.method == "getUpdates").count() >= 3
    })
    .await;
    let st = status(&gw, &dir);
    let err = st["channelAccounts"]["telegram"][0]["lastError"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        err.contains("409") || err.contains("getUpdates"),
        "the last fault is shown: {st}"
    );
    // 429 on the reply: waited out (retry_after 1), then delivered once.
    tg.fault(
        "sendMessage",
        Fault::Error {
            code: 429,
            description: "Too Many Requests: retry after 1".into(),
            retry_after: Some(1),
        },
    );
    fake.push(Reply::Text {
        chunks: vec!["Patience pays.".into()],
        delay_ms: 0,
    });
    tg.dm(OWNER, "Ann", "now?");
    let calls = wait_reply(&tg, OWNER, "Patience pays.").await;
    let sends: Vec<&Call> = calls.iter().filter(|c| c.method == "sendMessage").collect();
    assert_eq!(sends.len(), 2, "refused once, then sent");
    assert!(
        sends[1].at.duration_since(sends[0].at) >= Duration::from_millis(950),
        "retry_after honoured"
    );
    drop(gw);

    // A revoked token: 401, the channel stops and says why; no token anywhere in it.
    let tg2 = FakeTelegram::start().await;
    let dir2 = temp("401");
    let cfg = format!(
        "{}\n[channels.telegram]\nbot_token = \"7000001:WRONGwrongWRONG\"\napi_root = \"{}\"\n",
        fake.gateway_toml("fake", "fake-model", ""),
        tg2.api_root()
    );
    std::fs::write(dir2.join("gateway.toml"), cfg).unwrap();
    let p = dir2.join("gateway.toml").to_string_lossy().into_owned();
    let gw2 = Gateway::start_in(&dir2.join("state"), TOKEN, &["--config", &p]);
    tg2.wait_for(WAIT, |c| !c.is_empty()).await;
    let deadline = std::time::Instant::now() + WAIT;
    let st = loop {
        let st = status(&gw2, &dir2);
        if st["channelAccounts"]["telegram"][0]["stopped"] == true {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "not stopped: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let acc = &st["channelAccounts"]["telegram"][0];
    assert_eq!(acc["running"], false, "{st}");
    assert!(acc["lastError"].as_str().unwrap().contains("401"), "{st}");
    assert!(!st.to_string().contains("WRONGwrong"), "{st}");
    assert_eq!(acc["lifecycle"], "stopped", "{st}");
    assert!(
        st["statusIssues"][0]["message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{st}"
    );
    let n = tg2.calls().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tg2.calls().len(), n, "no more calls after a 401");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_receiving_and_replying_loses_nothing_and_answers_once() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("kill");
    let extra =
        format!("allow_from = [\"{OWNER}\"]\n[channels.telegram.streaming]\nmode = \"off\"");
    let mut gw = start(&dir, &fake, &tg, &extra);
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // The model hangs; the update is stored and its turn started when the gateway dies.
    fake.push(Reply::Stall);
    tg.dm(OWNER, "Ann", "survive this");
    fake.wait_requests(1, WAIT).await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    assert_eq!(
        tg.held(),
        0,
        "the update was confirmed to Telegram before the turn"
    );
    // Back up on the same state: the stored update is answered, once.
    fake.push(Reply::Text {
        chunks: vec!["Still here.".into()],
        delay_ms: 0,
    });
    let gw = start(&dir, &fake, &tg, &extra);
    let calls = wait_reply(&tg, OWNER, "Still here.").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls_after = tg.calls();
    let answers = chat_texts(&calls_after, OWNER)
        .iter()
        .filter(|t| *t == "Still here.")
        .count();
    assert_eq!(
        answers,
        1,
        "exactly one reply: {:?}",
        chat_texts(&calls, OWNER)
    );
    assert_eq!(
        fake.requests().len(),
        2,
        "the turn ran again after the restart, once"
    );
    // The session has the question once.
    let h = cli(
        &gw,
        &dir,
        &[
            "call",
            "chat.history",
            "--params",
            r#"{"sessionKey":"main"}"#,
            "--json",
        ],
    );
    assert_eq!(h.matches("survive this").count(), 1, "{h}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_a_photo_is_answered_with_the_nodes_jpeg() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("photo");
    let gw = start(&dir, &fake, &tg, &format!("allow_from = [\"{OWNER}\"]"));
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // A node with a camera (real wire format), its surface approved by the owner's CLI.
    let jpeg = support::bars_jpeg();
    let node_id = support::camera_node(&gw, jpeg.clone()).await;
    let out = cli(&gw, &dir, &["nodes", "approve", &node_id]);
    assert!(out.contains("approved"), "{out}");
    fake.push(Reply::ToolCall {
        id: "call_snap".into(),
        name: "nodes".into(),
        arguments: json!({ "action": "camera_snap", "node": node_id }).to_string(),
        preamble: Some("Taking one.".into()),
    });
    fake.push(Reply::Text {
        chunks: vec!["Here is the kitchen.".into()],
        delay_ms: 0,
    });
    tg.dm(OWNER, "Ann", "take a photo");
    let calls = tg
        .wait_for(WAIT, |c| c.iter().any(|c| c.method == "sendPhoto"))
        .await;
    assert!(
        chat_texts(&calls, OWNER)
            .iter()
            .any(|t| t.contains("Here is the kitchen.")),
        "{:?}",
        chat_texts(&calls, OWNER)
    );
    let photo = calls.iter().find(|c| c.method == "sendPhoto").unwrap();
    let (field, _name, mime, bytes) = photo.file.clone().expect("a multipart file");
    assert_eq!(field, "photo");
    assert_eq!(mime, "image/jpeg");
    assert_eq!(bytes, jpeg, "the node's JPEG, byte for byte");
    assert_eq!(photo.params["chat_id"], OWNER.to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_in_one_chat_does_not_hold_up_another() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("chats");
    let gw = start(
        &dir,
        &fake,
        &tg,
        "dm_policy = \"open\"\nallow_from = [\"*\"]\ndm_scope = \"per-channel-peer\"\n[channels.telegram.streaming]\nmode = \"off\"",
    );
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // A session per sender. Ann's turn hangs (the model never finishes); Bob, asking after
    // her, is answered all the same.
    fake.push(Reply::Stall);
    tg.dm(OWNER, "Ann", "a long question");
    fake.wait_requests(1, WAIT).await;
    fake.push(Reply::Text {
        chunks: vec!["Quick one.".into()],
        delay_ms: 0,
    });
    tg.dm(777, "Bob", "a short one");
    wait_reply(&tg, 777, "Quick one.").await;
    assert!(
        chat_texts(&tg.calls(), OWNER).is_empty(),
        "Ann's answer is still being written"
    );
    // Bob's next messages are answered in order.
    fake.push(Reply::Text {
        chunks: vec!["First.".into()],
        delay_ms: 200,
    });
    fake.push(Reply::Text {
        chunks: vec!["Second.".into()],
        delay_ms: 0,
    });
    tg.dm(777, "Bob", "one");
    tg.dm(777, "Bob", "two");
    let calls = wait_reply(&tg, 777, "Second.").await;
    let texts = chat_texts(&calls, 777);
    let first = texts.iter().position(|t| t == "First.").unwrap();
    let second = texts.iter().position(|t| t == "Second.").unwrap();
    assert!(first < second, "{texts:?}");
    let l = cli(&gw, &dir, &["call", "sessions.list", "--json"]);
    assert!(
        l.contains("agent:main:telegram:direct:4242")
            && l.contains("agent:main:telegram:direct:777"),
        "{l}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_answer_but_before_its_delivery_sends_that_answer_without_a_new_turn() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("kill2");
    let extra =
        format!("allow_from = [\"{OWNER}\"]\n[channels.telegram.streaming]\nmode = \"off\"");
    let mut gw = start(&dir, &fake, &tg, &extra);
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // The model answers at once; Telegram drops the first send, and the gateway dies while it
    // waits to retry.
    fake.push(Reply::Text {
        chunks: vec!["Answered before the crash.".into()],
        delay_ms: 0,
    });
    tg.fault("sendMessage", Fault::Drop);
    tg.dm(OWNER, "Ann", "quick question");
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "sendMessage"))
        .await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    assert_eq!(fake.requests().len(), 1);
    let _gw = start(&dir, &fake, &tg, &extra);
    wait_reply(&tg, OWNER, "Answered before the crash.").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.requests().len(),
        1,
        "the saved answer was sent; the model was not asked again"
    );
    let n = chat_texts(&tg.calls(), OWNER)
        .iter()
        .filter(|t| *t == "Answered before the crash.")
        .count();
    assert_eq!(n, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_chat_is_capped_and_others_are_still_answered() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let tg = FakeTelegram::start().await;
    let dir = temp("flood");
    let gw = start(
        &dir,
        &fake,
        &tg,
        "dm_policy = \"open\"\nallow_from = [\"*\"]\ndm_scope = \"per-channel-peer\"",
    );
    tg.wait_for(WAIT, |c| c.iter().any(|c| c.method == "getUpdates"))
        .await;
    // Ann's first question hangs the model; she sends 70 more.
    fake.push(Reply::Stall);
    tg.dm(OWNER, "Ann", "first");
    fake.wait_requests(1, WAIT).await;
    for i in 0..70 {
        tg.dm(OWNER, "Ann", &format!("again {i}"));
    }
    // Bob is still answered.
    fake.push(Reply::Text {
        chunks: vec!["Hi Bob.".into()],
        delay_ms: 0,
    });
    tg.dm(777, "Bob", "hello");
    wait_reply(&tg, 777, "Hi Bob.").await;
    let st = status(&gw, &dir);
    let acc = &st["channelAccounts"]["telegram"][0];
    let pending = acc["pendingUpdates"].as_u64().unwrap();
    assert!(pending <= 50, "at most 50 waiting for one chat: {st}");
    assert!(
        acc["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("messages already waiting"),
        "{st}"
    );
    assert_eq!(tg.held(), 0, "every update was confirmed to Telegram");
    let _ = std::fs::remove_dir_all(&dir);
}
