//! Wire conformance, second pass: the rules of the reference (§1, §2, §10) that `wire.rs` does
//! not pin yet — exact close reasons and error details, the 64 KiB boundary, byte-exact device
//! signature payloads, the shape of every frame the gateway sends (checked both against the
//! reference's closed objects, written out here by hand, and against the committed JSON
//! Schemas), SIGINT, the `pincer-gateway call` CLI, and a few edge frames.
//!
//! Uses the shared `support` module (gateway process on a free port, raw WebSocket client,
//! `Connect` builder) so both suites drive the binary the same way.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pincer_protocol::identity::DeviceKeyPair;
use serde_json::{json, Value};
use support::*;

fn detail(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

fn message(res: &Value) -> &str {
    res["error"]["message"].as_str().unwrap_or("")
}

/// A `device` block signed over a payload string written out by hand (not through
/// `SignedFields`), so the test pins the reference's byte layout (§2.4) independently of the
/// protocol crate.
fn device_block(key: &DeviceKeyPair, payload: &str, signed_at: u64, nonce: &str) -> Value {
    json!({
        "id": key.public_key().device_id().to_hex().as_str(),
        "publicKey": key.public_key().to_base64url().as_str(),
        "signature": key.sign_base64url(payload.as_bytes()).as_str(),
        "signedAt": signed_at,
        "nonce": nonce,
    })
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

// ---------------------------------------------------------------------------------------------
// Handshake edges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn challenge_nonce_is_a_uuid_v4_and_conn_ids_differ() {
    let gw = Gateway::start(&[]);
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        assert!(
            is_uuid_v4(&nonce),
            "nonce is not a lowercase UUIDv4: {nonce}"
        );
        let res = c.connect(Connect::default().params(&nonce)).await;
        assert_eq!(res["ok"], true, "{res}");
        ids.insert(
            res["payload"]["server"]["connId"]
                .as_str()
                .expect("connId")
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 3, "connId must be per socket: {ids:?}");
}

#[tokio::test]
async fn websocket_upgrade_is_accepted_on_any_path() {
    let gw = Gateway::start(&[]);
    for path in ["/", "/ws", "/some/deep/path?x=1"] {
        let mut c = Client::open(&format!("{}{path}", gw.url())).await;
        let v = c.recv().await;
        assert_eq!(v["event"], "connect.challenge", "{path}: {v}");
    }
}

#[tokio::test]
async fn first_frame_that_is_an_event_is_an_invalid_request_frame() {
    let gw = Gateway::start(&[]);
    // An event frame without an id: the answer is addressed to "invalid".
    let mut c = gw.open().await;
    c.challenge().await;
    c.send(&json!({ "type": "event", "event": "connect" }))
        .await;
    let res = match c.next_within(5.0).await {
        Some(Next::Frame(v)) => v,
        other => panic!("expected a res before the close, got {other:?}"),
    };
    assert_eq!(res["type"], "res", "{res}");
    assert_eq!(res["id"], "invalid", "{res}");
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert!(message(&res).starts_with("invalid request frame"), "{res}");
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("invalid request frame"), "{reason}");

    // A `res` frame sent by a client is no request either; its id is echoed.
    let mut c = gw.open().await;
    c.challenge().await;
    c.send(&json!({ "type": "res", "id": "r1", "ok": true }))
        .await;
    let res = c.response("r1").await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert!(message(&res).starts_with("invalid request frame"), "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

#[tokio::test]
async fn first_request_that_is_not_connect_closes_with_that_reason() {
    let gw = Gateway::start(&[]);
    let mut c = gw.open().await;
    c.challenge().await;
    let res = c.call("s", "status", json!({})).await;
    assert_eq!(
        message(&res),
        "invalid handshake: first request must be connect"
    );
    assert_eq!(
        c.closed().await,
        (
            1008,
            "invalid handshake: first request must be connect".into()
        )
    );
}

#[tokio::test]
async fn connect_params_with_an_unknown_key_or_none_at_all_are_refused() {
    let gw = Gateway::start(&[]);
    // Unknown key at the params root.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect::default().params(&nonce);
    p["bogus"] = json!(1);
    let res = c.connect(p).await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert!(message(&res).starts_with("invalid connect params"), "{res}");
    // §1.3: the offending property is named.
    assert!(message(&res).contains("bogus"), "{res}");
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("invalid connect params"), "{reason}");
    assert!(
        reason.len() <= 120,
        "close reason over 120 bytes: {reason:?}"
    );

    // Unknown key inside `client`, and a mode outside the enum.
    for (path, value) in [("color", json!("red")), ("mode", json!("robot"))] {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        let mut p = Connect::default().params(&nonce);
        p["client"][path] = value;
        let res = c.connect(p).await;
        assert!(
            message(&res).starts_with("invalid connect params"),
            "client.{path}: {res}"
        );
        assert_eq!(c.closed().await.0, 1008);
    }

    // No params at all: `connect` needs them.
    let mut c = gw.open().await;
    c.challenge().await;
    c.send(&json!({ "type": "req", "id": "np", "method": "connect" }))
        .await;
    let res = c.response("np").await;
    assert_eq!(res["ok"], false);
    assert!(message(&res).starts_with("invalid connect params"), "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

#[tokio::test]
async fn protocol_is_checked_before_the_shared_secret() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect {
        min: 5,
        max: 6,
        token: Some("not-the-token".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(detail(&res), "PROTOCOL_MISMATCH", "{res}");
    assert_eq!(res["error"]["details"]["clientMinProtocol"], 5);
    assert_eq!(res["error"]["details"]["clientMaxProtocol"], 6);
    assert_eq!(c.closed().await, (1002, "protocol mismatch".into()));
    // Below the window as well.
    let (mut c, res) = Connect {
        min: 1,
        max: 2,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(detail(&res), "PROTOCOL_MISMATCH", "{res}");
    assert_eq!(c.closed().await.0, 1002);
}

#[tokio::test]
async fn auth_failures_carry_the_reference_details() {
    let gw = Gateway::start(&[]);
    let steps = [
        "retry_with_device_token",
        "update_auth_configuration",
        "update_auth_credentials",
        "wait_then_retry",
        "review_auth_configuration",
    ];
    for (token, want) in [
        (Some("wrong"), "AUTH_TOKEN_MISMATCH"),
        (None, "AUTH_TOKEN_MISSING"),
    ] {
        let (mut c, res) = Connect {
            token: token.map(Into::into),
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["ok"], false);
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        assert!(message(&res).starts_with("unauthorized"), "{res}");
        let d = &res["error"]["details"];
        assert_eq!(d["code"], want, "{res}");
        assert!(d["authReason"].is_string(), "authReason: {res}");
        assert!(
            d["canRetryWithDeviceToken"].is_boolean(),
            "canRetryWithDeviceToken: {res}"
        );
        assert!(
            d["recommendedNextStep"]
                .as_str()
                .is_some_and(|s| steps.contains(&s)),
            "recommendedNextStep: {res}"
        );
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1008);
        assert!(reason.starts_with("unauthorized"), "{reason}");
    }
    // A device proof does not make up for a wrong shared token.
    let (mut c, res) = Connect {
        token: Some("wrong".into()),
        key: Some(new_key()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(detail(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

#[tokio::test]
async fn preauth_limit_is_exactly_64_kib() {
    let gw = Gateway::start(&[]);
    // A valid connect padded (in `userAgent`) to `size` bytes.
    let frame = |nonce: &str, size: usize| -> String {
        let mut p = Connect::default().params(nonce);
        p["userAgent"] = json!("");
        let base = json!({ "type": "req", "id": "big", "method": "connect", "params": p })
            .to_string()
            .len();
        p["userAgent"] = json!("u".repeat(size - base));
        let text =
            json!({ "type": "req", "id": "big", "method": "connect", "params": p }).to_string();
        assert_eq!(text.len(), size);
        text
    };
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    c.send_text(frame(&nonce, 65_536)).await;
    let res = c.response("big").await;
    assert_eq!(res["ok"], true, "a 65536-byte connect must be read: {res}");

    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    c.send_text(frame(&nonce, 65_537)).await;
    match c.next_within(5.0).await {
        Some(Next::Closed(code, _)) => assert_eq!(code, 1009),
        other => panic!("a 65537-byte first frame must be closed 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_over_max_payload_after_hello_are_closed_1009() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect::default().run(&gw).await;
    assert_eq!(res["ok"], true);
    // One MiB is fine...
    let id = "m".repeat(1024 * 1024);
    c.send(&json!({ "type": "req", "id": id, "method": "health" }))
        .await;
    assert_eq!(c.response(&id).await["ok"], true);
    // ...25 MiB + 1 is not.
    let text = format!(
        r#"{{"type":"req","id":"x","method":"health","params":{{"p":"{}"}}}}"#,
        "z".repeat(26_214_400)
    );
    c.send_text(text).await;
    match c.next_within(10.0).await {
        Some(Next::Closed(code, _)) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Device proofs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn device_proof_failures_close_with_the_reference_reasons() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let base = || Connect {
        key: Some(key.clone()),
        ..Default::default()
    };
    // (details.code, details.reason, close reason) per §1.3 / §1.7.
    let check = |res: &Value, code: &str, reason: &str| {
        assert_eq!(res["ok"], false, "{res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        assert_eq!(detail(res), code, "{res}");
        assert_eq!(res["error"]["details"]["reason"], reason, "{res}");
    };

    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    p["device"]["id"] = json!("ab".repeat(32));
    check(
        &c.connect(p).await,
        "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        "device-id-mismatch",
    );
    assert_eq!(c.closed().await, (1008, "device identity mismatch".into()));

    let mut c = gw.open().await;
    c.challenge().await;
    let p = base().params("00000000-0000-4000-8000-000000000000");
    check(
        &c.connect(p).await,
        "DEVICE_AUTH_NONCE_MISMATCH",
        "device-nonce-mismatch",
    );
    assert_eq!(c.closed().await, (1008, "device nonce mismatch".into()));

    // Ten minutes in the future is as stale as ten minutes ago.
    let (mut c, res) = Connect {
        signed_at: Some(now_ms() + 600_000),
        ..base()
    }
    .run(&gw)
    .await;
    check(
        &res,
        "DEVICE_AUTH_SIGNATURE_EXPIRED",
        "device-signature-stale",
    );
    assert_eq!(c.closed().await, (1008, "device signature expired".into()));

    // A signature that is not even base64url.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    p["device"]["signature"] = json!("not a signature!");
    check(
        &c.connect(p).await,
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "device-signature",
    );
    assert_eq!(c.closed().await, (1008, "device signature invalid".into()));

    // A public key of the wrong length.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    p["device"]["publicKey"] = json!("AAAA");
    check(
        &c.connect(p).await,
        "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        "device-public-key",
    );
    assert_eq!(c.closed().await, (1008, "device public key invalid".into()));

    // Within the ±120 s skew is fine.
    let (_, res) = Connect {
        signed_at: Some(now_ms() - 60_000),
        ..base()
    }
    .run(&gw)
    .await;
    assert_eq!(
        res["ok"], true,
        "a 60 s old signature is within skew: {res}"
    );
}

#[tokio::test]
async fn nodes_without_a_device_identity_are_refused() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect {
        client_id: "node-host",
        mode: "node",
        role: "node",
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    assert_eq!(message(&res), "device identity required");
    assert_eq!(detail(&res), "DEVICE_IDENTITY_REQUIRED");
    assert_eq!(c.closed().await, (1008, "device identity required".into()));
}

#[tokio::test]
async fn signature_payload_is_byte_exact() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let id = key.public_key().device_id().to_hex();
    // v3 with scopes in the order sent (not sorted), platform and deviceFamily lowercased
    // (ASCII only) in the payload while the params keep their case.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let scopes = ["operator.write", "operator.read"];
    let payload = format!(
        "v3|{id}|test|test|operator|operator.write,operator.read|{at}|{TOKEN}|{nonce}|linux|raspberry pi"
    );
    assert_eq!(payload.matches('|').count(), 10);
    let p = json!({
        "minProtocol": 3, "maxProtocol": 4,
        "client": { "id": "test", "version": "1.0.0", "platform": "Linux",
                    "deviceFamily": "Raspberry Pi", "mode": "test" },
        "role": "operator", "scopes": scopes,
        "auth": { "token": TOKEN },
        "device": device_block(&key, &payload, at, &nonce),
    });
    let res = c.connect(p.clone()).await;
    assert_eq!(res["ok"], true, "hand-built v3 payload refused: {res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(scopes),
        "granted scopes: {res}"
    );

    // The same payload with the scopes sorted does not verify (the gateway must not sort).
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let sorted = format!(
        "v3|{id}|test|test|operator|operator.read,operator.write|{at}|{TOKEN}|{nonce}|linux|raspberry pi"
    );
    let mut p2 = p.clone();
    p2["device"] = device_block(&key, &sorted, at, &nonce);
    let res = c.connect(p2).await;
    assert_eq!(detail(&res), "DEVICE_AUTH_SIGNATURE_INVALID", "{res}");

    // v2: nine fields, no platform/deviceFamily.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let v2 =
        format!("v2|{id}|test|test|operator|operator.write,operator.read|{at}|{TOKEN}|{nonce}");
    let mut p3 = p.clone();
    p3["device"] = device_block(&key, &v2, at, &nonce);
    let res = c.connect(p3).await;
    assert_eq!(res["ok"], true, "hand-built v2 payload refused: {res}");

    // Role defaults to operator in the payload when the params leave it out.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let no_role = format!("v3|{id}|test|test|operator||{at}|{TOKEN}|{nonce}|linux|raspberry pi");
    let mut p4 = p.clone();
    p4.as_object_mut().unwrap().remove("role");
    p4.as_object_mut().unwrap().remove("scopes");
    p4["device"] = device_block(&key, &no_role, at, &nonce);
    let res = c.connect(p4).await;
    assert_eq!(res["ok"], true, "absent role must sign as operator: {res}");
    assert_eq!(res["payload"]["auth"]["role"], "operator");
}

#[tokio::test]
async fn device_tokens_work_in_either_auth_field_and_stay_bound_to_their_key() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let (_, res) = Connect {
        client_id: "cli",
        mode: "cli",
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["role"], "operator");
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("cli device gets a device token")
        .to_owned();
    assert_eq!(token.len(), 43);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not base64url: {token}"
    );

    // `auth.deviceToken` alone; the signed token field is then the device token (§2.4).
    let connect_with = |k: &DeviceKeyPair, auth: Value, signed: &str, nonce: &str| {
        let kid = k.public_key().device_id().to_hex();
        let at = now_ms();
        let payload =
            format!("v3|{kid}|cli|cli|operator|operator.read|{at}|{signed}|{nonce}|linux|");
        json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": { "id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli" },
            "role": "operator", "scopes": ["operator.read"],
            "auth": auth,
            "device": device_block(k, &payload, at, nonce),
        })
    };
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &key,
            json!({ "deviceToken": token }),
            &token,
            &nonce,
        ))
        .await;
    assert_eq!(res["ok"], true, "auth.deviceToken refused: {res}");
    assert_eq!(c.call("s", "status", json!({})).await["ok"], true);

    // Another key with the same device token: refused, socket closed as unauthorized.
    let other = new_key();
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &other,
            json!({ "deviceToken": token }),
            &token,
            &nonce,
        ))
        .await;
    assert_eq!(
        res["ok"], false,
        "a device token worked for another key: {res}"
    );
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("unauthorized"), "{reason}");

    // The right key with a made-up device token: AUTH_DEVICE_TOKEN_MISMATCH.
    let fake = "A".repeat(43);
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &key,
            json!({ "deviceToken": fake }),
            &fake,
            &nonce,
        ))
        .await;
    assert_eq!(detail(&res), "AUTH_DEVICE_TOKEN_MISMATCH", "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

// ---------------------------------------------------------------------------------------------
// Scopes and requests after hello
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_backend_helper_keeps_its_scopes_without_a_device() {
    let gw = Gateway::start(&[]);
    let (mut b, res) = Connect {
        client_id: "gateway-client",
        mode: "backend",
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!(["operator.read"]));
    assert_eq!(b.call("s", "status", json!({})).await["ok"], true);
    // Same id in another mode is no helper.
    let (mut t, res) = Connect {
        client_id: "gateway-client",
        mode: "test",
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]), "{res}");
    let r = t.call("s", "status", json!({})).await;
    assert_eq!(message(&r), "missing scope: operator.read", "{r}");
    // Device-less hello-ok still carries auth (v4 clients require it), without a token.
    assert_eq!(res["payload"]["auth"]["role"], "operator");
    assert!(res["payload"]["auth"].get("deviceToken").is_none(), "{res}");
}

#[tokio::test]
async fn after_hello_frames_that_are_no_requests_get_errors_and_the_socket_stays() {
    let gw = Gateway::start(&[]);
    let (mut c, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    // An event frame without id → answered to "invalid".
    c.send(&json!({ "type": "event", "event": "x" })).await;
    let r = c.response("invalid").await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    assert!(message(&r).starts_with("invalid request frame"), "{r}");
    // Empty method / empty id: still invalid request frames, not closes.
    c.send(&json!({ "type": "req", "id": "e", "method": "" }))
        .await;
    let r = c.response("e").await;
    assert!(message(&r).starts_with("invalid request frame"), "{r}");
    // A JSON array, a JSON number.
    c.send_text("[1,2,3]").await;
    c.send_text("42").await;
    // A second connect from an admin.
    let r = c.call("c2", "connect", json!({})).await;
    assert_eq!(
        message(&r),
        "connect is only valid as the first request",
        "{r}"
    );
    let r = c.call("h", "health", json!({})).await;
    assert_eq!(r["ok"], true, "socket unusable after bad frames: {r}");
    // Responses echo arbitrary ids verbatim.
    let odd = "id with spaces, ünïcödé and \"quotes\"";
    assert_eq!(c.call(odd, "health", json!({})).await["id"], odd);
}

#[tokio::test]
async fn unknown_methods_are_refused_by_name_at_both_protocols() {
    let gw = Gateway::start(&[]);
    for (min, max) in [(3, 3), (4, 4)] {
        let (mut c, _) = Connect {
            min,
            max,
            key: Some(new_key()),
            scopes: vec!["operator.read"],
            ..Default::default()
        }
        .run(&gw)
        .await;
        let r = c.call("u", "chat.send", json!({ "any": "thing" })).await;
        assert_eq!(r["ok"], false);
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
        assert_eq!(message(&r), "unknown method: chat.send");
        assert_eq!(c.call("h", "health", json!({})).await["ok"], true);
    }
}

#[tokio::test]
async fn snapshot_lists_the_gateway_itself_and_hides_admin_fields_from_readers() {
    let gw = Gateway::start(&[]);
    let (_, res) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let snap = &res["payload"]["snapshot"];
    let presence = snap["presence"].as_array().expect("presence");
    assert!(
        presence
            .iter()
            .any(|e| e["mode"] == "gateway" && e["reason"] == "self"),
        "no self entry in {presence:?}"
    );
    for e in presence {
        assert!(e["ts"].is_u64(), "presence entry without ts: {e}");
    }
    for k in ["configPath", "stateDir", "authMode"] {
        assert!(snap.get(k).is_none(), "{k} shown to a non-admin: {snap}");
    }
}

#[tokio::test]
async fn cli_clients_cause_no_presence_event() {
    let gw = Gateway::start(&[]);
    let (mut a, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    // Drain what the watcher's own connect caused.
    while a.event("presence", 0.3).await.is_some() {}
    let (_cli, res) = Connect {
        client_id: "cli",
        mode: "cli",
        instance_id: Some("cli-instance".into()),
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        if let Some(ev) = a.event("presence", 0.7).await {
            assert!(
                !ev["payload"].to_string().contains("cli-instance"),
                "cli client listed: {ev}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every frame the gateway sends
// ---------------------------------------------------------------------------------------------

fn schema_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/schema")
}

struct Validators(HashMap<String, jsonschema::Validator>);

impl Validators {
    fn load() -> Validators {
        let mut m = HashMap::new();
        for dir in ["frames", "methods", "events"] {
            for entry in std::fs::read_dir(schema_root().join(dir)).expect("schema dir") {
                let path = entry.expect("entry").path();
                let schema: Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
                let name = format!(
                    "{dir}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                let v =
                    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
                m.insert(name, v);
            }
        }
        Validators(m)
    }

    /// Errors of `v` against schema `name`, when that schema exists.
    fn check(&self, name: &str, v: &Value, what: &str, problems: &mut Vec<String>) {
        if let Some(s) = self.0.get(name) {
            for e in s.iter_errors(v) {
                problems.push(format!("{what}: {name}: {e} at {}", e.instance_path));
            }
        }
    }
}

fn keys_within(obj: &Value, allowed: &[&str], what: &str, problems: &mut Vec<String>) {
    match obj.as_object() {
        Some(m) => {
            for k in m.keys() {
                if !allowed.contains(&k.as_str()) {
                    problems.push(format!("{what}: unexpected key {k:?}"));
                }
            }
        }
        None => problems.push(format!("{what}: not an object: {obj}")),
    }
}

const ERROR_CODES: &[&str] = &[
    "NOT_LINKED",
    "NOT_PAIRED",
    "AGENT_TIMEOUT",
    "INVALID_REQUEST",
    "APPROVAL_NOT_FOUND",
    "UNAVAILABLE",
    "FORBIDDEN",
];

/// The reference's closed frame objects (§1.2, §1.3, §1.8, §2.6), written out by hand.
fn reference_shape(frame: &Value, method: Option<&str>, problems: &mut Vec<String>) {
    let what = frame.to_string();
    let what = &what[..what.len().min(160)];
    match frame["type"].as_str() {
        Some("res") => {
            keys_within(
                frame,
                &["type", "id", "ok", "payload", "error"],
                what,
                problems,
            );
            if frame["id"].as_str().is_none_or(|s| s.is_empty()) {
                problems.push(format!("{what}: id"));
            }
            match frame["ok"].as_bool() {
                Some(true) if frame.get("error").is_some() => {
                    problems.push(format!("{what}: ok with error"))
                }
                Some(false) => {
                    let e = &frame["error"];
                    keys_within(
                        e,
                        &["code", "message", "details", "retryable", "retryAfterMs"],
                        what,
                        problems,
                    );
                    if !e["code"].as_str().is_some_and(|c| ERROR_CODES.contains(&c)) {
                        problems.push(format!("{what}: error.code"));
                    }
                    if !e["message"].is_string() {
                        problems.push(format!("{what}: error.message"));
                    }
                    if e.get("retryAfterMs").is_some() && !e["retryAfterMs"].is_u64() {
                        problems.push(format!("{what}: retryAfterMs"));
                    }
                }
                Some(true) => {}
                None => problems.push(format!("{what}: ok not boolean")),
            }
            if method == Some("connect") && frame["ok"] == true {
                hello_shape(&frame["payload"], what, problems);
            }
        }
        Some("event") => {
            keys_within(
                frame,
                &["type", "event", "payload", "seq", "stateVersion"],
                what,
                problems,
            );
            if frame["event"].as_str().is_none_or(|s| s.is_empty()) {
                problems.push(format!("{what}: event name"));
            }
            if frame.get("seq").is_some() && !frame["seq"].is_u64() {
                problems.push(format!("{what}: seq"));
            }
            if let Some(sv) = frame.get("stateVersion") {
                state_version(sv, what, problems);
            }
            if frame["event"] == "presence" {
                for e in frame["payload"]["presence"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    presence_entry(e, what, problems);
                }
            }
        }
        _ => problems.push(format!("{what}: type")),
    }
}

fn state_version(sv: &Value, what: &str, problems: &mut Vec<String>) {
    keys_within(sv, &["presence", "health"], what, problems);
    if !(sv["presence"].is_u64() && sv["health"].is_u64()) {
        problems.push(format!(
            "{what}: stateVersion needs integer presence and health"
        ));
    }
}

fn presence_entry(e: &Value, what: &str, problems: &mut Vec<String>) {
    keys_within(
        e,
        &[
            "ts",
            "host",
            "ip",
            "version",
            "platform",
            "deviceFamily",
            "modelIdentifier",
            "mode",
            "lastInputSeconds",
            "reason",
            "tags",
            "text",
            "deviceId",
            "roles",
            "scopes",
            "instanceId",
        ],
        what,
        problems,
    );
    if !e["ts"].is_u64() {
        problems.push(format!("{what}: presence entry ts"));
    }
}

fn hello_shape(h: &Value, what: &str, problems: &mut Vec<String>) {
    keys_within(
        h,
        &[
            "type",
            "protocol",
            "server",
            "features",
            "snapshot",
            "canvasHostUrl",
            "pluginSurfaceUrls",
            "auth",
            "policy",
        ],
        what,
        problems,
    );
    keys_within(
        &h["server"],
        &[
            "version",
            "connId",
            "buildId",
            "bootId",
            "controlUiBuildSource",
        ],
        what,
        problems,
    );
    keys_within(
        &h["features"],
        &["methods", "events", "capabilities"],
        what,
        problems,
    );
    let snap = &h["snapshot"];
    keys_within(
        snap,
        &[
            "presence",
            "health",
            "stateVersion",
            "uptimeMs",
            "configPath",
            "stateDir",
            "authMode",
            "sessionDefaults",
            "updateAvailable",
        ],
        what,
        problems,
    );
    state_version(&snap["stateVersion"], what, problems);
    for e in snap["presence"].as_array().into_iter().flatten() {
        presence_entry(e, what, problems);
    }
    keys_within(
        &h["auth"],
        &[
            "deviceToken",
            "role",
            "scopes",
            "issuedAtMs",
            "deviceTokens",
            "method",
        ],
        what,
        problems,
    );
    if !h["auth"]["scopes"].is_array() || !h["auth"]["role"].is_string() {
        problems.push(format!("{what}: hello-ok.auth needs role and scopes"));
    }
}

/// Reads every frame on `c` for `secs` (or until closed), recording what it saw.
async fn drain(c: &mut Client, secs: f64, into: &mut Vec<(Value, Option<String>)>) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        if left <= 0.0 {
            return;
        }
        match c.next_within(left).await {
            Some(Next::Frame(v)) => into.push((v, None)),
            _ => return,
        }
    }
}

#[tokio::test]
async fn every_frame_the_gateway_sends_has_the_reference_shape_and_matches_the_schemas() {
    let schemas = Validators::load();
    let mut gw = Gateway::start(&["--tick-interval-ms", "150"]);
    // (frame, method of the request it answers)
    let mut seen: Vec<(Value, Option<String>)> = Vec::new();

    // Handshake refusals.
    for c in [
        Connect {
            token: Some("wrong".into()),
            ..Default::default()
        },
        Connect {
            min: 9,
            max: 9,
            ..Default::default()
        },
        Connect {
            key: Some(new_key()),
            signed_at: Some(now_ms() - 3_600_000),
            ..Default::default()
        },
        Connect {
            role: "node",
            client_id: "node-host",
            mode: "node",
            ..Default::default()
        },
    ] {
        let mut s = gw.open().await;
        seen.push((s.recv().await, None));
        let nonce = seen.last().unwrap().0["payload"]["nonce"]
            .as_str()
            .unwrap()
            .to_owned();
        seen.push((s.connect(c.params(&nonce)).await, Some("connect".into())));
    }
    let mut s = gw.open().await;
    seen.push((s.recv().await, None));
    seen.push((
        s.call("1", "health", json!({})).await,
        Some("health".into()),
    ));

    // A watcher (device, read) and an admin that does everything once.
    let mut watcher = gw.open().await;
    let nonce = watcher.challenge().await;
    let hello = watcher
        .connect(
            Connect {
                key: Some(new_key()),
                scopes: vec!["operator.read"],
                ..Default::default()
            }
            .params(&nonce),
        )
        .await;
    seen.push((hello, Some("connect".into())));
    let (mut admin, hello) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin", "operator.read", "operator.pairing"],
        instance_id: Some("admin-1".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    seen.push((hello, Some("connect".into())));
    let (mut less3, hello) = Connect {
        min: 3,
        max: 3,
        ..Default::default()
    }
    .run(&gw)
    .await;
    seen.push((hello, Some("connect".into())));
    seen.push((
        less3.call("f", "status", json!({})).await,
        Some("status".into()),
    ));
    drop(less3);

    let calls: Vec<(&str, Value)> = vec![
        ("health", json!({})),
        ("health", json!({ "probe": true })),
        ("status", json!({})),
        ("system-presence", json!({})),
        ("last-heartbeat", json!({})),
        ("config.get", json!({})),
        ("channels.status", json!({})),
        (
            "system-event",
            json!({ "text": "hello", "idempotencyKey": "k" }),
        ),
        (
            "system-event",
            json!({ "text": "hello", "idempotencyKey": "k" }),
        ),
        ("device.pair.list", json!({})),
        ("node.list", json!({})),
        ("no.such.method", json!({})),
        ("health", json!({ "nope": 1 })),
        ("connect", json!({})),
        ("node.event", json!({ "event": "x" })),
    ];
    for (i, (m, p)) in calls.into_iter().enumerate() {
        let id = format!("a{i}");
        seen.push((admin.call(&id, m, p).await, Some(m.to_owned())));
    }
    drain(&mut admin, 0.5, &mut seen).await;
    drain(&mut watcher, 0.1, &mut seen).await;

    // Shutdown: the last frames.
    let pid = gw.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    drain(&mut watcher, 5.0, &mut seen).await;
    let _ = gw.child.wait();

    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (frame, method) in &seen {
        let text = frame.to_string();
        let what = &text[..text.len().min(160)];
        reference_shape(frame, method.as_deref(), &mut problems);
        if pincer_protocol::frames::Frame::decode(&text).is_err() {
            problems.push(format!("{what}: Frame::decode refuses it"));
        }
        match frame["type"].as_str() {
            Some("res") => {
                schemas.check("frames/response.json", frame, what, &mut problems);
                if frame["ok"] == true {
                    if let Some(m) = method {
                        schemas.check(
                            &format!("methods/{m}.result.json"),
                            &frame["payload"],
                            what,
                            &mut problems,
                        );
                    }
                }
            }
            Some("event") => {
                let name = frame["event"].as_str().unwrap_or("");
                names.insert(name.to_owned());
                schemas.check("frames/event.json", frame, what, &mut problems);
                schemas.check(
                    &format!("events/{name}.json"),
                    &frame["payload"],
                    what,
                    &mut problems,
                );
            }
            _ => {}
        }
    }
    for want in ["connect.challenge", "tick", "presence", "shutdown"] {
        assert!(names.contains(want), "no {want} event seen; saw {names:?}");
    }
    assert!(
        problems.is_empty(),
        "{} problems in {} frames:\n{}",
        problems.len(),
        seen.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Process: SIGINT and the `call` CLI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sigint_also_sends_shutdown_to_every_client_then_1012() {
    let mut gw = Gateway::start(&[]);
    let (mut a, _) = Connect::default().run(&gw).await;
    let (mut b, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let pid = gw.child.id().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    for c in [&mut a, &mut b] {
        let ev = c.event("shutdown", 5.0).await.expect("shutdown event");
        assert!(ev["payload"]["reason"].is_string(), "{ev}");
        assert!(ev["seq"].is_u64(), "broadcast events carry seq: {ev}");
        assert_eq!(c.closed().await, (1012, "service restart".into()));
    }
    let t = Instant::now();
    loop {
        if let Some(st) = gw.child.try_wait().expect("wait") {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("PINCER_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("CLAWDBOT_GATEWAY_TOKEN")
        .output()
        .expect("run pincer-gateway")
}

#[test]
fn call_prints_the_result_payload_and_fails_with_the_error() {
    let gw = Gateway::start(&[]);
    let url = gw.url();
    let state = std::env::temp_dir().join(format!("pincer-conf-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let s = state.to_str().expect("utf8");
    let base = [
        "--url",
        url.as_str(),
        "--token",
        TOKEN,
        "--state-dir",
        s,
        "--timeout-ms",
        "5000",
    ];
    let run = |method: &str, extra: &[&str]| -> Output {
        let mut a = vec!["call", method];
        a.extend_from_slice(&base);
        a.extend_from_slice(extra);
        cli(&a)
    };
    let text = |o: &Output| {
        format!(
            "status {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let schemas = Validators::load();
    for method in ["health", "status", "system-presence"] {
        let o = run(method, &["--json"]);
        assert!(o.status.success(), "{method}: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("{method}: stdout is not one JSON value ({e}): {}", text(&o))
        });
        let mut problems = Vec::new();
        schemas.check(
            &format!("methods/{method}.result.json"),
            &v,
            method,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
    // Params are passed through.
    let o = run(
        "system-event",
        &["--params", r#"{"text":"from the cli"}"#, "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run("status", &["--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        v["queuedSystemEvents"].to_string().contains("from the cli"),
        "{v}"
    );

    // Errors: non-zero exit, message on stderr, nothing on stdout.
    let o = run("no.such.method", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown method: no.such.method"),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let o = run("health", &["--params", r#"{"probe":"yes"}"#]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid health params"),
        "{}",
        text(&o)
    );
    let o = run("health", &["--params", "not json"]);
    assert!(!o.status.success(), "{}", text(&o));

    // A wrong shared token from a fresh identity: refused.
    let fresh = state.join("fresh");
    let o = cli(&[
        "call",
        "health",
        "--url",
        &url,
        "--token",
        "wrong",
        "--state-dir",
        fresh.to_str().unwrap(),
        "--timeout-ms",
        "5000",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("AUTH_TOKEN_MISMATCH") || err.contains("unauthorized"),
        "{}",
        text(&o)
    );
    // Nobody listening: non-zero, not a hang.
    drop(gw);
    let o = run("health", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_is_closed_1007() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;
    let gw = Gateway::start(&[]);
    let bad = || {
        Message::Frame(Frame::message(
            vec![0x7b, 0xff, 0xfe, 0x7d],
            OpCode::Data(Data::Text),
            true,
        ))
    };
    // Before hello-ok…
    let mut c = gw.open().await;
    c.challenge().await;
    c.ws.send(bad()).await.expect("send");
    match c.next_within(5.0).await {
        Some(Next::Closed(code, _)) => assert_eq!(code, 1007),
        other => panic!("pre-auth: expected close 1007, got {other:?}"),
    }
    // …and after it.
    let (mut c, res) = Connect::default().run(&gw).await;
    assert_eq!(res["ok"], true);
    c.ws.send(bad()).await.expect("send");
    assert_eq!(c.closed().await.0, 1007);
}
