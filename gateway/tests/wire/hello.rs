//! §2.6 hello-ok payload: the features, snapshot, policy and auth a client reads from
//! hello-ok; the snapshot lists the gateway itself and shows admin-only fields to admins only.

use serde_json::json;

use crate::support::*;

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
    // The reference tells every role 25 MiB; a client that may not write is told (and held
    // to) 1 MiB, the only deliberate difference in this frame.
    assert_eq!(
        h["policy"],
        json!({ "maxPayload": 1048576, "maxBufferedBytes": 52428800, "tickIntervalMs": 1500 })
    );
    assert_eq!(h["auth"]["scopes"], json!(["operator.read"]));
    // Only the keys the reference frames allow.
    let keys: Vec<&String> = res.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "res frame keys: {keys:?}");
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
