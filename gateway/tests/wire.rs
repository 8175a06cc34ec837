//! Conformance of pincer-gateway's wire behaviour over real sockets, against the real binary:
//! each test is one rule of the reference protocol (§1, §2) that a client would notice.

mod support;

use std::time::{Duration, Instant};

use pincer_protocol::identity::PayloadVersion;
use serde_json::{json, Value};
use support::*;

fn detail(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn challenge_comes_first_with_a_fresh_nonce_and_no_seq() {
    let gw = Gateway::start(&[]);
    let mut a = gw.open().await;
    let mut b = gw.open().await;
    let va = a.recv().await;
    let vb = b.recv().await;
    for v in [&va, &vb] {
        assert_eq!(v["type"], "event");
        assert_eq!(v["event"], "connect.challenge");
        assert!(v.get("seq").is_none(), "challenge must carry no seq: {v}");
        assert!(v["payload"]["ts"]
            .as_u64()
            .is_some_and(|ts| ts.abs_diff(now_ms()) < 60_000));
        assert_eq!(
            v["payload"]["nonce"].as_str().map(str::len),
            Some(36),
            "uuid nonce: {v}"
        );
    }
    assert_ne!(va["payload"]["nonce"], vb["payload"]["nonce"]);
}

#[tokio::test]
async fn bad_first_frames_are_refused_then_closed() {
    let gw = Gateway::start(&[]);
    // Not JSON: closed (1000) without a response.
    let mut c = gw.open().await;
    c.challenge().await;
    c.send_text("hello?").await;
    match c.next_within(5.0).await {
        Some(Next::Closed(code, _)) => assert_eq!(code, 1000),
        other => panic!("expected a bare close, got {other:?}"),
    }
    // A request that is not connect.
    let mut c = gw.open().await;
    c.challenge().await;
    let res = c.call("1", "health", json!({})).await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        res["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(c.closed().await.0, 1008);
    // JSON that is not a request frame (unknown key).
    let mut c = gw.open().await;
    c.challenge().await;
    c.send(&json!({ "type": "req", "id": "x", "method": "connect", "params": {}, "bogus": 1 }))
        .await;
    let res = c.response("x").await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid request frame"),
        "{res}"
    );
    assert_eq!(c.closed().await.0, 1008);
    // A connect whose params break the schema (client.id is an enum).
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect::default().params(&nonce);
    p["client"]["id"] = json!("ios-node");
    let res = c.connect(p).await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid connect params"),
        "{res}"
    );
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(
        reason.starts_with("invalid connect params") && reason.len() <= 123,
        "{reason}"
    );
}

#[tokio::test]
async fn wrong_or_missing_secret_is_refused_with_its_code() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect {
        token: Some("wrong".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
    assert_eq!(detail(&res), "AUTH_TOKEN_MISMATCH");
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("unauthorized"), "{reason}");
    let (_, res) = Connect {
        token: None,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(detail(&res), "AUTH_TOKEN_MISSING");

    let pw = Gateway::start(&["--auth", "password", "--password", "hunter2"]);
    let (_, res) = Connect {
        token: None,
        ..Default::default()
    }
    .run(&pw)
    .await;
    assert_eq!(detail(&res), "AUTH_PASSWORD_MISSING");
    let mut c = pw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        token: None,
        ..Default::default()
    }
    .params(&nonce);
    p["auth"] = json!({ "password": "hunter3" });
    assert_eq!(
        detail(&c.connect(p.clone()).await),
        "AUTH_PASSWORD_MISMATCH"
    );
    let mut c = pw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        token: None,
        ..Default::default()
    }
    .params(&nonce);
    p["auth"] = json!({ "password": "hunter2" });
    assert_eq!(c.connect(p).await["ok"], true);
}

#[tokio::test]
async fn protocol_range_is_negotiated_or_refused_with_1002() {
    let gw = Gateway::start(&[]);
    for (min, max, want) in [(3, 3, 3), (4, 4, 4), (3, 4, 4), (1, 9, 4)] {
        let (_, res) = Connect {
            min,
            max,
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["payload"]["protocol"], want, "{min}..{max}: {res}");
    }
    let (mut c, res) = Connect {
        min: 5,
        max: 6,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["error"]["message"], "protocol mismatch");
    assert_eq!(detail(&res), "PROTOCOL_MISMATCH");
    assert_eq!(res["error"]["details"]["expectedProtocol"], 4);
    assert_eq!(c.closed().await, (1002, "protocol mismatch".into()));
}

#[tokio::test]
async fn preauth_frames_are_capped_at_64_kib_then_max_payload_applies() {
    let gw = Gateway::start(&[]);
    let mut c = gw.open().await;
    c.challenge().await;
    c.send_text(format!(
        r#"{{"type":"req","id":"{}","method":"connect"}}"#,
        "x".repeat(70 * 1024)
    ))
    .await;
    assert_eq!(c.closed().await.0, 1009);

    let (mut c, res) = Connect {
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let big = "y".repeat(100 * 1024);
    let r = c.call("big", "health", json!({})).await;
    assert_eq!(r["ok"], true);
    c.send(&json!({ "type": "req", "id": big, "method": "health", "params": {} }))
        .await;
    let r = c.response(&big).await;
    assert_eq!(r["ok"], true, "100 KiB frame after hello refused");
}

#[tokio::test]
async fn silent_sockets_are_closed_at_the_handshake_deadline() {
    let gw = Gateway::start(&["--handshake-timeout-ms", "300"]);
    let mut c = gw.open().await;
    let t = Instant::now();
    c.challenge().await;
    let (code, _) = c.closed().await;
    assert_eq!(code, 1000);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn device_proofs_are_checked() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    // Signature by another key than the one presented.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        key: Some(key.clone()),
        ..Default::default()
    }
    .params(&nonce);
    let other = Connect {
        key: Some(new_key()),
        ..Default::default()
    }
    .params(&nonce);
    p["device"]["signature"] = other["device"]["signature"].clone();
    let res = c.connect(p).await;
    assert_eq!(detail(&res), "DEVICE_AUTH_SIGNATURE_INVALID");
    assert_eq!(c.closed().await, (1008, "device signature invalid".into()));
    // Id that is not the key's fingerprint.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        key: Some(key.clone()),
        ..Default::default()
    }
    .params(&nonce);
    p["device"]["id"] = json!("0".repeat(64));
    assert_eq!(
        detail(&c.connect(p).await),
        "DEVICE_AUTH_DEVICE_ID_MISMATCH"
    );
    // A connect recorded on one socket replayed on another: its nonce is not this challenge.
    let mut a = gw.open().await;
    let nonce_a = a.challenge().await;
    let recorded = Connect {
        key: Some(key.clone()),
        ..Default::default()
    }
    .params(&nonce_a);
    let mut b = gw.open().await;
    b.challenge().await;
    assert_eq!(
        detail(&b.connect(recorded).await),
        "DEVICE_AUTH_NONCE_MISMATCH"
    );
    // A signature from ten minutes ago.
    let (_, res) = Connect {
        key: Some(key.clone()),
        signed_at: Some(now_ms() - 600_000),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(detail(&res), "DEVICE_AUTH_SIGNATURE_EXPIRED");
    // The v2 payload is still accepted.
    let (_, res) = Connect {
        key: Some(key),
        payload_version: PayloadVersion::V2,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
}

#[tokio::test]
async fn loopback_devices_are_paired_silently_and_get_a_device_token() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let (_, res) = Connect {
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["role"], "operator");
    let token = auth["deviceToken"]
        .as_str()
        .expect("deviceToken")
        .to_owned();
    assert_eq!(token.len(), 43);
    // The device token alone lets the same key back in...
    let (_, res) = Connect {
        key: Some(key),
        token: Some(token.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    // ...but not another key.
    let (_, res) = Connect {
        key: Some(new_key()),
        token: Some(token),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
}

#[tokio::test]
async fn hello_ok_has_the_reference_shape() {
    let gw = Gateway::start(&["--tick-interval-ms", "1500"]);
    let (_, res) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let h = &res["payload"];
    assert_eq!(h["type"], "hello-ok");
    assert!(h["server"]["version"].is_string() && h["server"]["connId"].is_string());
    let list = |k: &str| -> Vec<String> {
        h["features"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for m in [
        "health",
        "status",
        "system-presence",
        "last-heartbeat",
        "system-event",
        "node.invoke",
        "device.pair.list",
    ] {
        assert!(list("methods").contains(&m.to_owned()), "methods lack {m}");
    }
    for e in [
        "connect.challenge",
        "tick",
        "presence",
        "health",
        "shutdown",
    ] {
        assert!(list("events").contains(&e.to_owned()), "events lack {e}");
    }
    assert!(h["snapshot"]["presence"].is_array());
    assert!(
        h["snapshot"]["stateVersion"]["presence"].is_u64()
            && h["snapshot"]["stateVersion"]["health"].is_u64()
    );
    assert!(h["snapshot"]["uptimeMs"].is_u64());
    assert_eq!(
        h["policy"],
        json!({ "maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 1500 })
    );
    assert_eq!(h["auth"]["scopes"], json!(["operator.read"]));
    // Only the keys the reference frames allow.
    let keys: Vec<&String> = res.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "res frame keys: {keys:?}");
}

#[tokio::test]
async fn scopes_are_enforced_per_method() {
    let gw = Gateway::start(&[]);
    // A device-less client that is not a trusted local helper: scopes cleared.
    let (mut c, res) = Connect {
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));
    assert_eq!(c.call("1", "health", json!({})).await["ok"], true);
    let r = c.call("2", "status", json!({})).await;
    assert_eq!(
        (r["error"]["code"].as_str(), r["error"]["message"].as_str()),
        (Some("FORBIDDEN"), Some("missing scope: operator.read"))
    );
    // At protocol 3 the same refusal says INVALID_REQUEST.
    let (mut c3, _) = Connect {
        min: 3,
        max: 3,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(
        c3.call("1", "status", json!({})).await["error"]["code"],
        "INVALID_REQUEST"
    );
    // The CLI's device-less helper on loopback keeps its scopes.
    let (mut cli, _) = Connect {
        client_id: "cli",
        mode: "cli",
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(cli.call("1", "status", json!({})).await["ok"], true);
    // With a device: read allows status, not system-event (admin).
    let (mut d, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(d.call("1", "status", json!({})).await["ok"], true);
    assert_eq!(
        d.call("2", "system-event", json!({ "text": "x" })).await["error"]["message"],
        "missing scope: operator.admin"
    );
    assert_eq!(
        d.call("3", "no.such.method", json!({})).await["error"]["message"],
        "unknown method: no.such.method"
    );
    assert_eq!(
        d.call("4", "connect", json!({})).await["error"]["message"],
        "connect is only valid as the first request"
    );
    // Node-only methods refuse operators.
    assert_eq!(
        d.call("5", "node.event", json!({ "event": "x" })).await["error"]["message"],
        "unauthorized role: operator"
    );
}

#[tokio::test]
async fn a_retried_side_effect_runs_once() {
    let gw = Gateway::start(&[]);
    let (mut c, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let p = json!({ "text": "door opened", "idempotencyKey": "k-1" });
    let first = c.call("1", "system-event", p.clone()).await;
    let retry = c.call("2", "system-event", p).await;
    assert_eq!(first["payload"], retry["payload"]);
    let status = c.call("3", "status", json!({})).await;
    let queued: Vec<&str> = status["payload"]["queuedSystemEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(queued, vec!["door opened"]);
    c.call(
        "4",
        "system-event",
        json!({ "text": "door opened", "idempotencyKey": "k-2" }),
    )
    .await;
    let status = c.call("5", "status", json!({})).await;
    assert_eq!(
        status["payload"]["queuedSystemEvents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn ticks_arrive_at_the_cadence_with_increasing_seq() {
    let gw = Gateway::start(&["--tick-interval-ms", "200"]);
    let (mut c, _) = Connect::default().run(&gw).await;
    let start = Instant::now();
    let mut ticks = Vec::new();
    let mut last_seq = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let Some(Next::Frame(v)) = c.next_within(1.0).await else {
            break;
        };
        if v["type"] == "event" {
            let seq = v["seq"].as_u64().expect("events carry seq");
            assert!(seq > last_seq, "seq not increasing: {seq} after {last_seq}");
            last_seq = seq;
            if v["event"] == "tick" {
                assert!(v["payload"]["ts"].is_u64());
                ticks.push(Instant::now());
            }
        }
    }
    assert!(ticks.len() >= 4, "only {} ticks in 1.5 s", ticks.len());
    for w in ticks.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(100),
            "ticks {:?} apart",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn presence_follows_connects_and_disconnects() {
    let gw = Gateway::start(&[]);
    let (mut a, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let (b, res) = Connect {
        key: Some(new_key()),
        instance_id: Some("instance-b".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let listed = |v: &Value| {
        v["payload"]["presence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["instanceId"] == "instance-b")
    };
    let ev = loop {
        let ev = a
            .event("presence", 3.0)
            .await
            .expect("presence event after connect");
        if listed(&ev) {
            break ev;
        }
    };
    assert!(ev["stateVersion"]["presence"].is_u64());
    drop(b);
    loop {
        let ev = a
            .event("presence", 3.0)
            .await
            .expect("presence event after disconnect");
        if !listed(&ev) {
            break;
        }
    }
    // CLI clients are not listed.
    let (_cli, _) = Connect {
        client_id: "cli",
        mode: "cli",
        instance_id: Some("instance-cli".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    let p = a.call("p", "system-presence", json!({})).await;
    assert!(!p["payload"].to_string().contains("instance-cli"));
}

#[tokio::test]
async fn sigterm_sends_shutdown_then_closes_1012() {
    let mut gw = Gateway::start(&[]);
    let (mut c, _) = Connect::default().run(&gw).await;
    let pid = gw.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let ev = c
        .event("shutdown", 5.0)
        .await
        .expect("shutdown event before the close");
    assert!(ev["payload"]["reason"].is_string());
    assert_eq!(c.closed().await, (1012, "service restart".into()));
    let t = Instant::now();
    loop {
        if let Some(st) = gw.child.try_wait().expect("wait") {
            assert!(st.success(), "gateway exit status {st:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "gateway still running 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_hello_bad_frames_get_errors_and_the_socket_stays() {
    let gw = Gateway::start(&[]);
    let (mut c, _) = Connect::default().run(&gw).await;
    c.send(&json!({ "type": "event", "event": "hello", "id": "e1" }))
        .await;
    let r = c.response("e1").await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    c.send_text("not json at all").await;
    assert_eq!(c.call("h", "health", json!({})).await["ok"], true);
    let r = c
        .call("p", "health", json!({ "probe": true, "unexpected": 1 }))
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid health params"),
        "{r}"
    );
}

#[tokio::test]
async fn pairing_events_reach_only_operators_with_the_pairing_scope() {
    let gw = Gateway::start(&[]);
    let (mut admin, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.pairing", "operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let (mut reader, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    // A stranger behind an untrusted proxy asks to pair.
    let mut o = pincer_gateway::operator::call::CallOptions::new(gw.url(), gw.dir.join("stranger"));
    o.token = Some(TOKEN.into());
    o.headers = vec![("X-Forwarded-For".into(), "198.51.100.7".into())];
    o.scopes = Some(vec!["operator.read".into(), "operator.write".into()]);
    assert!(
        pincer_gateway::operator::call::call(&o, "health", json!({}))
            .await
            .is_err()
    );
    let ev = admin
        .event("device.pair.requested", 3.0)
        .await
        .expect("requested event");
    let request_id = ev["payload"]["requestId"]
        .as_str()
        .expect("requestId")
        .to_owned();
    assert_eq!(ev["payload"]["remoteIp"], "127.0.0.1");
    // An operator may not grant scopes it lacks (write, here)...
    let r = admin
        .call(
            "a",
            "device.pair.approve",
            json!({ "requestId": request_id }),
        )
        .await;
    assert_eq!(
        r["error"]["message"], "missing scope: operator.write",
        "{r}"
    );
    // ...so it rejects this one; the stranger asks again for read only, and that is approved.
    assert_eq!(
        admin
            .call(
                "r",
                "device.pair.reject",
                json!({ "requestId": request_id })
            )
            .await["ok"],
        true
    );
    let ev = admin
        .event("device.pair.resolved", 3.0)
        .await
        .expect("resolved event");
    assert_eq!(ev["payload"]["decision"], "rejected");
    o.scopes = Some(vec!["operator.read".into()]);
    assert!(
        pincer_gateway::operator::call::call(&o, "health", json!({}))
            .await
            .is_err()
    );
    let ev = admin
        .event("device.pair.requested", 3.0)
        .await
        .expect("requested event for the narrower request");
    let request_id = ev["payload"]["requestId"]
        .as_str()
        .expect("requestId")
        .to_owned();
    let r = admin
        .call(
            "b",
            "device.pair.approve",
            json!({ "requestId": request_id }),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let ev = admin
        .event("device.pair.resolved", 3.0)
        .await
        .expect("resolved event");
    assert_eq!(ev["payload"]["decision"], "approved");
    assert!(
        reader.event("device.pair.requested", 0.5).await.is_none(),
        "read-only operator saw a pairing event"
    );
}

#[tokio::test]
async fn rotating_or_revoking_a_token_closes_the_device_sockets_and_retires_the_old_token() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let device_id = key.public_key().device_id().to_hex().as_str().to_owned();
    let (_, res) = Connect {
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let old = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let (mut live, res) = Connect {
        key: Some(key.clone()),
        token: Some(old.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let (mut admin, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;

    let r = admin
        .call(
            "rot",
            "device.token.rotate",
            json!({ "deviceId": device_id, "role": "operator" }),
        )
        .await;
    let new = r["payload"]["token"]
        .as_str()
        .expect("rotated token")
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(live.closed().await, (4001, "device removed".into()));
    let (_, res) = Connect {
        key: Some(key.clone()),
        token: Some(old),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "the old token still works after rotation");
    let (mut live, res) = Connect {
        key: Some(key.clone()),
        token: Some(new.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");

    let r = admin
        .call(
            "rev",
            "device.token.revoke",
            json!({ "deviceId": device_id, "role": "operator" }),
        )
        .await;
    assert!(r["payload"]["revokedAtMs"].is_u64(), "{r}");
    assert_eq!(live.closed().await.0, 4001);
    let (_, res) = Connect {
        key: Some(key),
        token: Some(new),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "a revoked token still works");
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;
    let gw = Gateway::start(&[]);
    let (mut c, _) = Connect::default().run(&gw).await;
    c.ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .expect("send close");
    // A clean close: the gateway answers with its own Close frame (a dropped TCP connection
    // would read as 1006).
    assert_eq!(c.closed().await.0, 1000);
}
