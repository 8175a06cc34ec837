//! The shape of every frame the gateway sends, §1.2 Frames, §1.3 Error object, §1.8
//! Validation (closed objects: a strict client drops a frame with an extra key) and §2.6
//! hello-ok: checked against the reference's closed objects, written out here by hand, against
//! the committed JSON Schemas, and against pincer-protocol's own decoder.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::schemas::Validators;
use crate::support::*;

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

/// The reference's entry keys (its schema's, plus `clientId`, `timeZone` and `onlineSince`,
/// which openclaw@2026.9.6 puts on a Control UI's entry).
fn presence_entry(e: &Value, what: &str, problems: &mut Vec<String>) {
    keys_within(
        e,
        &[
            "ts",
            "clientId",
            "timeZone",
            "onlineSince",
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
