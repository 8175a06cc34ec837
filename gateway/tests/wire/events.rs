//! §5.1 List, scoping, seq, stateVersion and §5.2 Payloads: broadcast events carry an
//! increasing `seq`; `tick` comes at the policy's cadence; `presence` follows connects and
//! disconnects (with `stateVersion`) and never lists CLI clients.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

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
}

#[tokio::test]
async fn cli_clients_are_not_listed_in_presence() {
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
    // A device-less CLI and one with a device.
    let (_cli, res) = Connect {
        client_id: "cli",
        mode: "cli",
        instance_id: Some("instance-cli".into()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    let (_device_cli, res) = Connect {
        client_id: "cli",
        mode: "cli",
        instance_id: Some("cli-instance".into()),
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    // No presence event about them...
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        if let Some(ev) = a.event("presence", 0.7).await {
            let text = ev["payload"].to_string();
            assert!(
                !text.contains("instance-cli") && !text.contains("cli-instance"),
                "cli client listed: {ev}"
            );
        }
    }
    // ...and not in the presence list either.
    let p = a.call("p", "system-presence", json!({})).await;
    let text = p["payload"].to_string();
    assert!(
        !text.contains("instance-cli") && !text.contains("cli-instance"),
        "cli client listed: {p}"
    );
}
