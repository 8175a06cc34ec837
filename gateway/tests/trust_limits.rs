//! Setup codes (single use, bound to the first device, expiry honoured) and abuse limits (auth
//! failure lockout per client IP, pre-auth socket cap per IP), over real sockets against the
//! real binary.

use std::time::Duration;

use pincer_client::ClientError;
use pincer_gateway::operator::call::{call, CallOptions};
use serde_json::json;

mod support;
use support::{Connect, Gateway, TOKEN};

fn start(name: &str, config: &str) -> Gateway {
    let dir = std::env::temp_dir().join(format!("pincer-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config).expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    Gateway::start_in(&dir.join("state"), TOKEN, &["--config", &cfg])
}

fn client(gw: &Gateway, who: &str) -> CallOptions {
    let mut o = CallOptions::new(format!("ws://127.0.0.1:{}", gw.port), gw.dir.join(who));
    o.timeout = Duration::from_secs(5);
    o
}

fn operator(gw: &Gateway) -> CallOptions {
    let mut o = client(gw, "operator");
    o.token = Some(TOKEN.into());
    o
}

/// A client that looks remote: it comes through a proxy (header present), so it is never paired
/// silently.
fn remote(gw: &Gateway, who: &str, ip: &str) -> CallOptions {
    let mut o = client(gw, who);
    o.headers = vec![("X-Forwarded-For".into(), ip.into())];
    o
}

fn detail_code(r: &Result<serde_json::Value, ClientError>) -> String {
    match r {
        Err(ClientError::Refused(e)) => e.detail_code().unwrap_or("").to_owned(),
        other => format!("not refused: {other:?}"),
    }
}

/// Opens a socket to `url` and checks the gateway answers the upgrade with HTTP 503.
async fn refused_with_503(url: &str, what: &str) {
    let over = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("no hang");
    match over {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503, "{what}")
        }
        other => panic!(
            "expected HTTP 503 for {what}, got {:?}",
            other.map(|_| "upgrade")
        ),
    }
}

/// Retries the upgrade until the gateway has room again (at most 10 s) and returns the socket.
async fn upgrade_when_room(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return ws,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "no room after a close: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn setup_code_is_single_device_and_expires() {
    let gw = start("setup", "");
    let code = call(
        &operator(&gw),
        "device.pair.setupCode",
        json!({ "role": "operator", "ttlMs": 60_000 }),
    )
    .await
    .expect("setup code");
    let short = code["shortCode"].as_str().expect("shortCode").to_owned();
    let long = code["bootstrapToken"]
        .as_str()
        .expect("bootstrapToken")
        .to_owned();
    assert_eq!(short.len(), 9, "XXXX-XXXX");

    // The first device to present it (from afar, no shared token) gets in, read-only.
    let mut first = remote(&gw, "first", "198.51.100.20");
    first.bootstrap_token = Some(short.to_lowercase());
    first.scopes = Some(vec!["operator.read".into(), "operator.admin".into()]);
    let v = call(&first, "status", json!({}))
        .await
        .expect("first device with setup code");
    assert!(v["runtimeVersion"].is_string());
    let denied = call(&first, "device.pair.list", json!({})).await;
    assert!(
        matches!(denied, Err(ClientError::Method(_))),
        "setup code granted more than read: {denied:?}"
    );
    // The same device may present it again (it may have crashed before saving its token).
    call(&first, "health", json!({}))
        .await
        .expect("same device again");

    // Another device is refused, with a clear code, in both the short and the long form.
    for form in [short.clone(), long.clone()] {
        let mut second = remote(&gw, "second", "198.51.100.21");
        second.bootstrap_token = Some(form);
        let r = call(&second, "health", json!({})).await;
        assert_eq!(detail_code(&r), "AUTH_BOOTSTRAP_TOKEN_INVALID");
    }
    // A made-up code is refused the same way.
    let mut wrong = remote(&gw, "wrong", "198.51.100.22");
    wrong.bootstrap_token = Some("ZZZZ-ZZZZ".into());
    assert_eq!(
        detail_code(&call(&wrong, "health", json!({})).await),
        "AUTH_BOOTSTRAP_TOKEN_INVALID"
    );

    // Expiry.
    let brief = call(
        &operator(&gw),
        "device.pair.setupCode",
        json!({ "role": "operator", "ttlMs": 1_000 }),
    )
    .await
    .expect("setup code");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let mut late = remote(&gw, "late", "198.51.100.23");
    late.bootstrap_token = brief["shortCode"].as_str().map(str::to_owned);
    assert_eq!(
        detail_code(&call(&late, "health", json!({})).await),
        "AUTH_BOOTSTRAP_TOKEN_INVALID"
    );
}

#[tokio::test]
async fn auth_failures_lock_out_an_ip_but_not_others_or_loopback() {
    let gw = start("ratelimit", "trusted_proxies = [\"127.0.0.1\"]\n[limits]\nauth_max_attempts = 5\nauth_lockout_ms = 60000\n");
    let attacker = "203.0.113.50";
    for i in 0..5 {
        let mut o = remote(&gw, "attacker", attacker);
        o.token = Some(format!("guess-{i}"));
        assert_eq!(
            detail_code(&call(&o, "health", json!({})).await),
            "AUTH_TOKEN_MISMATCH",
            "attempt {i}"
        );
    }
    // Locked out now, even with the right token; told when to come back.
    let mut o = remote(&gw, "attacker", attacker);
    o.token = Some(TOKEN.into());
    match call(&o, "health", json!({})).await {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.detail_code(), Some("AUTH_RATE_LIMITED"));
            assert_eq!(e.retryable, Some(true));
            assert!(e.retry_after_ms.is_some_and(|ms| ms > 50_000), "{e:?}");
        }
        other => panic!("expected lockout, got {other:?}"),
    }
    // Another client IP is not affected (it still has to pair, but it gets that far).
    let mut other = remote(&gw, "neighbour", "203.0.113.51");
    other.token = Some(TOKEN.into());
    assert_eq!(
        detail_code(&call(&other, "health", json!({})).await),
        "PAIRING_REQUIRED"
    );
    // Loopback is exempt from the limit.
    for i in 0..7 {
        let mut o = client(&gw, "local-typo");
        o.token = Some(format!("typo-{i}"));
        assert_eq!(
            detail_code(&call(&o, "health", json!({})).await),
            "AUTH_TOKEN_MISMATCH"
        );
    }
    call(&operator(&gw), "health", json!({}))
        .await
        .expect("loopback still fine");
}

#[tokio::test]
async fn guesses_spread_over_many_addresses_pause_shared_secret_checks_but_not_paired_devices() {
    let gw = start(
        "spread",
        "trusted_proxies = [\"127.0.0.1\"]\n[limits]\nauth_max_attempts = 10\nauth_max_failures_total = 12\nauth_window_ms = 60000\n",
    );
    // A remote device paired before the attack.
    let mut phone = remote(&gw, "phone", "198.51.100.7");
    phone.token = Some(TOKEN.into());
    let asked = call(&phone, "health", json!({})).await;
    assert_eq!(detail_code(&asked), "PAIRING_REQUIRED");
    let Err(ClientError::Refused(e)) = asked else {
        unreachable!()
    };
    let request = e
        .details
        .as_ref()
        .and_then(|d| d["requestId"].as_str())
        .expect("requestId")
        .to_owned();
    call(
        &operator(&gw),
        "device.pair.approve",
        json!({ "requestId": request }),
    )
    .await
    .expect("approve");
    call(&phone, "health", json!({}))
        .await
        .expect("paired phone gets in with the token");
    // One wrong guess from each of 12 addresses: none of them is locked out on its own...
    for i in 0..12 {
        let mut o = remote(
            &gw,
            &format!("guesser-{i}"),
            &format!("203.0.113.{}", 100 + i),
        );
        o.token = Some(format!("guess-{i}"));
        assert_eq!(
            detail_code(&call(&o, "health", json!({})).await),
            "AUTH_TOKEN_MISMATCH",
            "guess {i}"
        );
    }
    // ...but together they filled the window: the shared secret is not compared for anyone
    // remote, not even the right one from a fresh address, and the refusal says when to retry.
    let mut fresh = remote(&gw, "fresh", "192.0.2.77");
    fresh.token = Some(TOKEN.into());
    match call(&fresh, "health", json!({})).await {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.detail_code(), Some("AUTH_RATE_LIMITED"), "{e:?}");
            assert!(
                e.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 60_000),
                "{e:?}"
            );
        }
        other => panic!("expected a pause, got {other:?}"),
    }
    // The paired phone still gets in with its device token, and loopback is exempt.
    phone.token = None;
    call(&phone, "health", json!({}))
        .await
        .expect("paired device during the pause");
    call(&operator(&gw), "health", json!({}))
        .await
        .expect("loopback during the pause");
}

#[tokio::test]
async fn unauthenticated_sockets_per_ip_are_capped_with_503() {
    let gw = start(
        "preauth",
        "[limits]\nmax_preauth_per_ip = 8\nhandshake_timeout_ms = 20000\n",
    );
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let mut held = Vec::new();
    for i in 0..8 {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .expect("no hang")
        .unwrap_or_else(|e| panic!("socket {i} refused: {e}"));
        held.push(ws);
    }
    refused_with_503(&url, "the 9th unauthenticated socket").await;
    // Closing one frees a slot (as soon as the gateway has seen it go).
    drop(held.pop());
    upgrade_when_room(&url).await;
}

#[tokio::test]
async fn authenticated_connections_hold_no_pre_auth_slot() {
    let gw = start(
        "preauth-done",
        "[limits]\nmax_preauth_per_ip = 4\nhandshake_timeout_ms = 20000\n",
    );
    // Twice the cap, all signed in and kept open: each gave its slot back at hello-ok.
    let mut held = Vec::new();
    for i in 0..8 {
        let (c, res) = Connect::default().run(&gw).await;
        assert_eq!(res["ok"], true, "connection {i}: {res}");
        held.push(c);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}", gw.port)),
    )
    .await
    .expect("no hang")
    .expect("an unauthenticated socket still gets in");
    drop(ws);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_by_its_byte_budget_while_others_go_on() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let gw = start("slow-reader", "[limits]\nmax_buffered_bytes = 262144\n");
    let (mut slow, hello) = Connect::default().run(&gw).await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["policy"]["maxBufferedBytes"], 262144);
    // 30,000 `health` requests (~36 MB of answers), none of them read: far more than the
    // socket buffers and the 256 KiB budget hold.
    const SENT: usize = 30_000;
    for i in 0..SENT {
        let req = json!({ "type": "req", "id": format!("h{i}"), "method": "health", "params": {} });
        if slow.ws.send(Message::text(req.to_string())).await.is_err() {
            break; // already closed by the gateway
        }
    }
    // Meanwhile everyone else is served.
    let v = call(&operator(&gw), "health", json!({}))
        .await
        .expect("another client gets health while one is stalled");
    assert_eq!(v["ok"], true);
    // The slow client finds the socket closed once it reads what was already on its way.
    let mut answered = 0;
    let closed = loop {
        match slow.next_within(30.0).await {
            Some(support::Next::Frame(_)) => answered += 1,
            Some(support::Next::Closed(code, reason)) => break (code, reason),
            None => panic!("not closed: {answered} answers read, then nothing for 30 s"),
        }
    };
    assert!(
        answered < SENT,
        "all {SENT} answered: the budget did not apply"
    );
    assert!(
        closed.0 == 1008 || closed.0 == 1006,
        "closed with {closed:?} after {answered} answers"
    );
    eprintln!("slow reader closed with {closed:?} after {answered} of {SENT} answers");
}

/// Peak resident memory of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    support::memcg::rss_kib(pid).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_invoke_params_are_refused_without_a_parsed_tree() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let gw = start("parse-before-authorise", "");
    // A client without scopes may not send such a frame at all: 1 MiB for it.
    let (mut reader, hello) = Connect::default().run(&gw).await;
    assert_eq!(
        hello["payload"]["policy"]["maxPayload"], 1_048_576,
        "{hello}"
    );
    // A node may (25 MiB), but may not call `node.invoke`: refused by role, without a tree.
    let (mut c, hello) = Connect {
        key: Some(support::new_key()),
        role: "node",
        client_id: "node-host",
        mode: "node",
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["policy"]["maxPayload"], 26_214_400);
    let before = peak_rss_kib(gw.child.id());
    // 200,000 values of 100 bytes each (20 MB, under the decoder's bound on values): as a
    // serde_json::Value tree that is several times its size; kept as text it is about its size.
    let zeros = vec![format!("{}", "9".repeat(100)); 200_000].join(",");
    let frame = format!(
        r#"{{"type":"req","id":"big","method":"node.invoke","params":{{"nodeId":"n","command":"system.run","idempotencyKey":"k","params":[{zeros}]}}}}"#
    );
    drop(zeros);
    let _ = reader.ws.send(Message::text(frame.clone())).await;
    loop {
        match reader.next_within(30.0).await {
            Some(support::Next::Frame(f)) => assert_ne!(f["id"], "big", "answered: {f}"),
            Some(support::Next::Closed(code, _)) => {
                assert!(code == 1009 || code == 1006, "closed {code}");
                break;
            }
            None => panic!("a 20 MB frame from a client without scopes was not closed"),
        }
    }
    c.ws.send(Message::text(frame)).await.expect("send");
    let r = c.response("big").await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["message"], "unauthorized role: node", "{r}");
    // Past the bound on values the refusal comes from the decoder, still without a tree.
    let zeros = vec!["0"; 10_000_000].join(",");
    let frame = format!(
        r#"{{"type":"req","id":"bigger","method":"node.invoke","params":{{"nodeId":"n","command":"system.run","idempotencyKey":"k","params":[{zeros}]}}}}"#
    );
    drop(zeros);
    c.ws.send(Message::text(frame)).await.expect("send");
    let r = c.response("bigger").await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("262144 JSON values")),
        "{r}"
    );
    let grew_mb = (peak_rss_kib(gw.child.id()) - before) / 1024;
    eprintln!("peak RSS grew {grew_mb} MB for a 20 MB frame");
    assert!(
        grew_mb < 120,
        "a refused 20 MB request took {grew_mb} MB at peak"
    );
}

#[tokio::test]
async fn pending_pairing_requests_are_capped_per_source_and_overall() {
    // Behind a trusted proxy each stranger has its own address; untrusted, they all share one.
    let gw = start("pending-cap", "trusted_proxies = [\"127.0.0.1\"]\n");
    let ask = |who: String, ip: &str| {
        let mut o = remote(&gw, &who, ip);
        o.token = Some(TOKEN.into());
        o
    };
    // One address: 8 pending requests, then refused until some are handled.
    for i in 0..8 {
        let o = ask(format!("same-{i}"), "198.51.100.1");
        assert_eq!(
            detail_code(&call(&o, "health", json!({})).await),
            "PAIRING_REQUIRED",
            "{i}"
        );
    }
    let o = ask("same-8".into(), "198.51.100.1");
    match call(&o, "health", json!({})).await {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.code, "UNAVAILABLE", "{e:?}");
            assert!(
                e.message.contains("too many pending pairing requests"),
                "{e:?}"
            );
            assert!(e.retry_after_ms.is_some(), "{e:?}");
        }
        other => panic!("expected the per-source cap, got {other:?}"),
    }
    // Many addresses: 64 in all.
    let mut refused = 0;
    for i in 0..70 {
        let o = ask(format!("many-{i}"), &format!("198.51.101.{}", i + 1));
        if let Err(ClientError::Refused(e)) = call(&o, "health", json!({})).await {
            if e.message.contains("too many pending pairing requests") {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 70 - (64 - 8), "overall cap");
    let list = call(&operator(&gw), "device.pair.list", json!({}))
        .await
        .expect("the owner still gets in and sees the list");
    assert_eq!(list["pending"].as_array().map(Vec::len), Some(64));
}

#[tokio::test]
async fn client_metadata_in_presence_is_bounded() {
    let gw = start("presence-fields", "");
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut params = Connect::default().params(&nonce);
    params["client"]["displayName"] = json!("n".repeat(30_000));
    params["client"]["version"] = json!("v".repeat(20_000));
    let res = c.connect(params).await;
    assert_eq!(res["ok"], true, "{res}");
    let presence = call(&operator(&gw), "system-presence", json!({}))
        .await
        .expect("system-presence");
    let entry = presence
        .as_array()
        .and_then(|a| a.iter().find(|e| e["mode"] == "test"))
        .expect("the client's entry");
    assert_eq!(entry["host"].as_str().map(str::len), Some(256));
    assert_eq!(entry["version"].as_str().map(str::len), Some(256));
    assert!(
        entry.to_string().len() < 2_000,
        "{} bytes",
        entry.to_string().len()
    );
}

#[tokio::test]
async fn sockets_past_the_connection_cap_get_503_until_one_closes() {
    let gw = start("conncap", "[limits]\nmax_connections = 4\n");
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let connect = || Connect {
        client_id: "cli",
        mode: "cli",
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    // Four authenticated sockets: the cap counts them, not only unauthenticated ones.
    let mut held = Vec::new();
    for i in 0..4 {
        let (c, res) = connect().run(&gw).await;
        assert_eq!(res["ok"], true, "socket {i}: {res}");
        held.push(c);
    }
    refused_with_503(&url, "a socket past the connection cap").await;
    // When one leaves, a new one gets in (as soon as the gateway has seen it go).
    drop(held.pop());
    let ws = upgrade_when_room(&url).await;
    // The socket that got in is the one that connects (a second one could find it still
    // counted).
    let mut c = support::Client { ws };
    let nonce = c.challenge().await;
    let res = c.connect(connect().params(&nonce)).await;
    assert_eq!(res["ok"], true, "{res}");
}
