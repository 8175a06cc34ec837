//! pincer-node (the real binary, as a process) against a small gateway written in this test
//! over a real socket: the exact connect frame and its v3 signature, the invoke round trip and
//! its error cases (unknown command, params forms, timeout, busy, cancel), reconnecting after a
//! dropped socket, the tick watchdog, retrying while pairing is pending, and which credential
//! goes into `auth` (shared token, stored device token, setup code).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use pincer_protocol::connect::ConnectParams;
use pincer_protocol::identity::{PayloadVersion, PublicKey, SignedFields};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::mock::{tmp, Conn, MockGateway, NodeProc, STEP, TOKEN};

/// Checks `device` against the key it names and the v3 payload built from the frame itself
/// with `token` as the signed token.
fn assert_signed(conn: &Conn, token: &str) {
    let p = conn.params();
    let d = &p["device"];
    let pk = PublicKey::from_base64url(d["publicKey"].as_str().expect("publicKey")).expect("key");
    assert_eq!(
        d["id"].as_str(),
        Some(pk.device_id().to_hex().as_str()),
        "device.id is the SHA-256 of the key"
    );
    assert_eq!(d["nonce"].as_str(), Some(conn.nonce.as_str()));
    let signed_at = d["signedAt"].as_u64().expect("signedAt");
    let now = pincer_node::now_ms();
    assert!(
        now.abs_diff(signed_at) < 60_000,
        "signedAt {signed_at} vs {now}"
    );
    let scopes: Vec<String> = Vec::new();
    let fields = SignedFields {
        device_id: d["id"].as_str().unwrap_or_default(),
        client_id: "node-host",
        client_mode: "node",
        role: "node",
        scopes: &scopes,
        signed_at_ms: signed_at,
        token,
        nonce: &conn.nonce,
        platform: p["client"]["platform"].as_str().unwrap_or_default(),
        device_family: p["client"]["deviceFamily"].as_str().unwrap_or_default(),
    };
    assert_eq!(
        fields.verify(&pk, d["signature"].as_str().expect("signature")),
        Ok(PayloadVersion::V3),
        "v3 signature over {:?}",
        fields.payload(PayloadVersion::V3)
    );
}

/// Processes whose parent is `ppid` and whose argv is `argv` (argv[0] compared by file name;
/// zombies have no argv).
fn children_running(ppid: u32, argv: &[&str]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let parent = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if parent != Some(ppid) {
                return false;
            }
            let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let got: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            got.len() == argv.len()
                && got.first().and_then(|a| a.rsplit('/').next()) == argv.first().copied()
                && got[1..] == argv[1..]
        })
        .count()
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_frame_invokes_and_reconnect() {
    let dir = tmp("invokes");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(
        state.join("exec-policy.toml"),
        "mode = \"allowlist\"\nallow = [\"sleep\"]\n",
    )
    .expect("policy");
    let gw = MockGateway::bind().await;
    let mut node = NodeProc::spawn(
        &[
            "--gateway",
            &gw.url,
            "--token",
            TOKEN,
            "--caps",
            "system",
            "--name",
            "mock-pi",
        ],
        &state,
        dir.join("node.log"),
    );

    // The connect frame, field by field.
    let mut c = gw.accept().await;
    eprintln!("connect frame: {}", c.frame);
    let p = c.params().clone();
    serde_json::from_value::<ConnectParams>(p.clone())
        .expect("connect params fit the closed ConnectParams schema");
    let (family, model) = pincer_node::board::identify();
    assert_eq!(p["minProtocol"], 3);
    assert_eq!(p["maxProtocol"], 4);
    assert_eq!(p["client"]["id"], "node-host");
    assert_eq!(p["client"]["mode"], "node");
    assert_eq!(p["client"]["platform"], "linux");
    assert_eq!(p["client"]["displayName"], "mock-pi");
    assert_eq!(p["client"]["version"], pincer_node::VERSION);
    assert_eq!(p["client"]["deviceFamily"].as_str(), Some(family.as_str()));
    assert_eq!(p["client"]["modelIdentifier"].as_str(), model.as_deref());
    let instance_id = p["client"]["instanceId"]
        .as_str()
        .expect("instanceId")
        .to_owned();
    assert_eq!(instance_id.len(), 36, "a UUID: {instance_id}");
    assert_eq!(p["role"], "node");
    assert_eq!(p["scopes"], json!([]));
    assert_eq!(p["caps"], json!(["system"]));
    assert_eq!(p["commands"], json!(["system.run", "system.which"]));
    assert!(p["pathEnv"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(p["auth"], json!({ "token": TOKEN }));
    assert_signed(&c, TOKEN);
    let device_id = p["device"]["id"].as_str().expect("id").to_owned();

    c.hello(30_000, Some("dev-tok-1")).await;
    // Events a node must ignore, and a frame that is not JSON.
    c.event("tick", json!({ "ts": 1 })).await;
    c.event("presence", json!({ "presence": [] })).await;
    c.event("health", json!({ "ok": true })).await;
    c.event("voicewake.changed", json!({ "triggers": ["openclaw"] }))
        .await;
    c.event("some.future.event", json!({})).await;
    c.send(json!("not a frame")).await;

    // system.which, paramsJSON as a string.
    let r = c
        .invoke(json!({ "id": "w1", "nodeId": device_id, "command": "system.which",
            "paramsJSON": r#"{"bins":["sh","no-such-bin-pincer"]}"#, "timeoutMs": 5000, "idempotencyKey": "k1" }))
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["nodeId"].as_str()),
        (Some(true), Some(device_id.as_str())),
        "{r}"
    );
    let payload: Value =
        serde_json::from_str(r["payloadJSON"].as_str().expect("payloadJSON")).expect("JSON");
    let sh = payload["bins"]["sh"].as_str().expect("sh found");
    assert!(sh.starts_with('/') && sh.ends_with("/sh"), "{payload}");
    assert!(
        payload["bins"].get("no-such-bin-pincer").is_none(),
        "{payload}"
    );
    // …as a `params` object (defensive form).
    let r = c
        .invoke(json!({ "id": "w2", "nodeId": device_id, "command": "system.which", "params": { "bins": ["sh"] } }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // paramsJSON null / absent reach the command (which wants `bins`): INVALID_REQUEST, and
    // the same for text that is not JSON.
    for (id, extra) in [
        ("n1", json!({ "paramsJSON": null })),
        ("n2", json!({})),
        ("n3", json!({ "paramsJSON": "{not json" })),
    ] {
        let mut req = json!({ "id": id, "nodeId": device_id, "command": "system.which" });
        if let (Some(o), Some(e)) = (req.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let r = c.invoke(req).await;
        assert_eq!(
            (r["ok"].as_bool(), r["error"]["code"].as_str()),
            (Some(false), Some("INVALID_REQUEST")),
            "{id}: {r}"
        );
    }
    // A request that does not decode (no command) but names its id is still answered.
    let r = c.invoke(json!({ "id": "m1", "nodeId": device_id })).await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    // Unknown command; and a refused `res` for its result must not upset the node.
    c.event(
        "node.invoke.request",
        json!({ "id": "u1", "nodeId": device_id, "command": "camera.snap", "paramsJSON": null }),
    )
    .await;
    let r = c.results(&["u1"], &["u1"]).await.remove("u1").expect("u1");
    assert_eq!(
        (r["ok"].as_bool(), r["error"].clone()),
        (
            Some(false),
            json!({ "code": "UNAVAILABLE", "message": "command not supported" })
        )
    );
    // The exec policy (allowlist: sleep) refuses anything else.
    let r = c
        .invoke(json!({ "id": "d1", "nodeId": device_id, "command": "system.run", "paramsJSON": r#"{"command":["uptime"]}"# }))
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("system.run denied by exec policy")),
        "{r}"
    );
    // timeoutMs is honoured, and the child is killed.
    let pid = node.child.id();
    let t = Instant::now();
    let r = c
        .invoke(
            json!({ "id": "t1", "nodeId": device_id, "command": "system.run",
            "paramsJSON": r#"{"command":["sleep","37.25"]}"#, "timeoutMs": 300 }),
        )
        .await;
    assert_eq!(r["error"]["code"], "TIMEOUT", "{r}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Four at once fill the node; the fifth is told it is busy.
    let argv = ["sleep", "41.5"];
    for i in 0..4 {
        c.event(
            "node.invoke.request",
            json!({ "id": format!("b{i}"), "nodeId": device_id, "command": "system.run",
                "paramsJSON": r#"{"command":["sleep","41.5"]}"#, "timeoutMs": 20000 }),
        )
        .await;
    }
    let deadline = Instant::now() + STEP;
    while children_running(pid, &argv) < 4 {
        assert!(Instant::now() < deadline, "4 sleeps never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        children_running(pid, &["sleep", "37.25"]),
        0,
        "the timed-out child was killed"
    );
    let r = c
        .invoke(json!({ "id": "b4", "nodeId": device_id, "command": "system.which", "paramsJSON": r#"{"bins":["sh"]}"# }))
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("node busy")),
        "{r}"
    );
    // node.invoke.cancel (v4) stops them: one CANCELLED result each, children gone.
    for i in 0..4 {
        c.event(
            "node.invoke.cancel",
            json!({ "invokeId": format!("b{i}"), "nodeId": device_id }),
        )
        .await;
    }
    let rs = c.results(&["b0", "b1", "b2", "b3"], &[]).await;
    for (id, r) in &rs {
        assert_eq!(r["error"]["code"], "CANCELLED", "{id}: {r}");
    }
    let deadline = Instant::now() + STEP;
    while children_running(pid, &argv) > 0 {
        assert!(
            Instant::now() < deadline,
            "cancelled children still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The slots are free again.
    let r = c
        .invoke(json!({ "id": "w3", "nodeId": device_id, "command": "system.which", "paramsJSON": r#"{"bins":["sh"]}"# }))
        .await;
    assert_eq!(r["ok"], true, "{r}");

    // State on disk: private files, the device token saved.
    assert_eq!(mode_of(&state.join("identity.json")), 0o600);
    assert_eq!(mode_of(&state.join("device-auth.json")), 0o600);
    let auth: Value =
        serde_json::from_slice(&std::fs::read(state.join("device-auth.json")).expect("read"))
            .expect("JSON");
    assert_eq!(auth["tokens"]["node"]["token"], "dev-tok-1");

    // The gateway drops the socket: the node comes back after a short backoff, as the same
    // device and instance, and with the explicit token still preferred.
    let dropped = Instant::now();
    drop(c);
    let c2 = gw.accept().await;
    let gap = c2.at.duration_since(dropped);
    assert!(
        gap >= Duration::from_millis(200) && gap < Duration::from_secs(3),
        "reconnected after {gap:?}"
    );
    assert_eq!(
        c2.params()["device"]["id"].as_str(),
        Some(device_id.as_str())
    );
    assert_eq!(
        c2.params()["client"]["instanceId"].as_str(),
        Some(instance_id.as_str())
    );
    assert_eq!(c2.params()["auth"], json!({ "token": TOKEN }));
    assert_signed(&c2, TOKEN);
    assert!(node.alive(), "node exited:\n{}", node.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_watchdog_and_stored_credentials() {
    let dir = tmp("pairing");
    let state = dir.join("state");
    let gw = MockGateway::bind().await;
    let mut node = NodeProc::spawn(
        &["--gateway", &gw.url, "--token", TOKEN],
        &state,
        dir.join("node.log"),
    );
    let request_id = "5f0c1d2e-8a9b-4c3d-9e8f-0123456789ab";

    // Pairing pending: refused twice with the reference's error and close; the node keeps
    // retrying (the reference node host stops here), with growing delays.
    let mut gaps = Vec::new();
    let mut c = gw.accept().await;
    assert_eq!(c.params()["caps"], json!([]), "no --caps, no classes");
    assert_eq!(c.params()["commands"], json!([]));
    for _ in 0..2 {
        let id = c.frame["id"].clone();
        c.send(json!({ "type": "res", "id": id, "ok": false, "error": {
            "code": "NOT_PAIRED", "message": "pairing required",
            "details": { "code": "PAIRING_REQUIRED", "requestId": request_id, "reason": "not-paired" } } }))
            .await;
        let _ =
            c.ws.send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(1008),
                reason: "pairing required".into(),
            })))
            .await;
        // The node answers with a clean close rather than dropping the socket.
        let answer = c.next(STEP).await.expect_err("a close from the node");
        assert_eq!(answer.map(|f| u16::from(f.code)), Some(1000));
        let closed = Instant::now();
        drop(c);
        c = gw.accept().await;
        gaps.push(c.at.duration_since(closed));
        assert!(node.alive(), "node gave up:\n{}", node.log());
    }
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_millis(200) && *g < Duration::from_secs(5)),
        "{gaps:?}"
    );
    let log = node.log();
    assert!(
        log.contains(&format!("openclaw devices approve {request_id}"))
            && log.contains("pincer-gateway devices approve 5F0C1D2E"),
        "approve commands not logged:\n{log}"
    );

    // Approved: hello-ok with a 500 ms tick, then silence. The watchdog closes with 4000
    // after two intervals and the node reconnects (old socket closed first).
    c.hello(500, Some("dev-tok-B")).await;
    let t = Instant::now();
    let close = c.next(Duration::from_secs(5)).await.expect_err("a close");
    let waited = t.elapsed();
    assert_eq!(
        close.map(|c| u16::from(c.code)),
        Some(4000),
        "after {waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let mut c = gw.accept().await;
    assert_eq!(c.params()["auth"], json!({ "token": TOKEN }));
    c.hello(30_000, None).await;
    drop(node);

    // Restarted without a token: the stored device token is used (and signed).
    let node = NodeProc::spawn(&["--gateway", &gw.url], &state, dir.join("node2.log"));
    let c = gw.accept().await;
    assert_eq!(c.params()["auth"], json!({ "token": "dev-tok-B" }));
    assert_signed(&c, "dev-tok-B");
    drop(node);

    // A fresh node with a setup code in the reference's form: the URL comes from the code and
    // the token goes out as auth.bootstrapToken (and is what is signed).
    let code = pincer_protocol::base64url::encode(
        json!({ "url": gw.url, "bootstrapToken": "boot-1" })
            .to_string()
            .as_bytes(),
    );
    let node = NodeProc::spawn(
        &["--setup-code", &code],
        &dir.join("fresh"),
        dir.join("node3.log"),
    );
    let c = gw.accept().await;
    assert_eq!(c.params()["auth"], json!({ "bootstrapToken": "boot-1" }));
    assert_signed(&c, "boot-1");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    support::memcg::rss_kib(pid).1 / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_gateway_cannot_make_the_node_balloon_or_crash() {
    let dir = tmp("rogue");
    let gw = MockGateway::bind().await;
    let mut node = NodeProc::spawn(
        &["--gateway", &gw.url, "--token", "t", "--caps", "system"],
        &dir.join("state"),
        dir.join("node.log"),
    );
    let mut conn = gw.accept().await;
    conn.hello(60_000, None).await;
    // 20 MB of `[0,0,…]` in an event the node does not act on: never decoded into a tree.
    let zeros = vec!["0"; 10_000_000].join(",");
    conn.ws
        .send(Message::text(format!(
            r#"{{"type":"event","event":"presence","payload":{{"presence":[{zeros}]}}}}"#
        )))
        .await
        .expect("send");
    drop(zeros);
    // The node still answers on the same link.
    let r = conn
        .invoke(json!({ "id": "after-big", "nodeId": "n", "command": "system.which", "paramsJSON": "{\"bins\":[\"sh\"]}" }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let peak = peak_rss_mib(node.child.id());
    assert!(peak < 120, "a 20 MB event took the node to {peak} MB");
    // A frame over the node's cap (40 MB): the node drops the link instead of taking it in.
    let huge = "x".repeat(40 * 1024 * 1024);
    let _ = tokio::time::timeout(
        STEP,
        conn.ws.send(Message::text(format!(
            r#"{{"type":"event","event":"tick","payload":{{"x":"{huge}"}}}}"#
        ))),
    )
    .await;
    drop(huge);
    // …and comes back by itself.
    let mut again = gw.accept().await;
    again.hello(60_000, None).await;
    assert!(node.alive(), "the node exited:\n{}", node.log());
    let peak = peak_rss_mib(node.child.id());
    assert!(peak < 120, "a 40 MB frame took the node to {peak} MB");
    eprintln!("node peak RSS {peak} MB");
    let _ = std::fs::remove_dir_all(&dir);
}
