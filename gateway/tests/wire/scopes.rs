//! §2.7 Device-less connections and scope clearing, §4.1 Authorization model: a device-less
//! operator's scopes are cleared unless it is a loopback helper (the CLI, the backend
//! `gateway-client`); each method needs its scope (`FORBIDDEN` at v4, `INVALID_REQUEST` at v3)
//! and node methods need the node role.

use serde_json::json;

use crate::message;
use crate::support::*;

#[tokio::test]
async fn device_less_clients_lose_their_scopes_unless_they_are_a_loopback_helper() {
    let gw = Gateway::start(&[]);
    // (client.id, client.mode, keeps its scopes)
    for (client_id, mode, keeps) in [
        ("test", "test", false),
        // Same id as the backend helper in another mode is no helper.
        ("gateway-client", "test", false),
        ("cli", "cli", true),
        ("gateway-client", "backend", true),
    ] {
        let what = format!("{client_id}/{mode}");
        let (mut c, res) = Connect {
            client_id,
            mode,
            scopes: vec!["operator.read"],
            ..Default::default()
        }
        .run(&gw)
        .await;
        let auth = &res["payload"]["auth"];
        let want = if keeps {
            json!(["operator.read"])
        } else {
            json!([])
        };
        assert_eq!(auth["scopes"], want, "{what}: {res}");
        // Device-less hello-ok still carries auth (v4 clients require it), without a token.
        assert_eq!(auth["role"], "operator", "{what}: {res}");
        assert!(auth.get("deviceToken").is_none(), "{what}: {res}");
        assert_eq!(c.call("1", "health", json!({})).await["ok"], true, "{what}");
        let r = c.call("2", "status", json!({})).await;
        if keeps {
            assert_eq!(r["ok"], true, "{what}: {r}");
        } else {
            assert_eq!(
                (r["error"]["code"].as_str(), message(&r)),
                (Some("FORBIDDEN"), "missing scope: operator.read"),
                "{what}: {r}"
            );
        }
    }
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
}

#[tokio::test]
async fn scopes_and_roles_are_enforced_per_method() {
    let gw = Gateway::start(&[]);
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
    // Node-only methods refuse operators.
    assert_eq!(
        d.call("5", "node.event", json!({ "event": "x" })).await["error"]["message"],
        "unauthorized role: operator"
    );
}

#[tokio::test]
async fn scopes_outside_the_operator_set_are_neither_granted_nor_stored() {
    let gw = Gateway::start(&[]);
    // A loopback device pairs silently with what it was granted.
    let (mut c, res) = Connect {
        client_id: "cli",
        mode: "cli",
        scopes: vec![
            "operator.read",
            "operator.bogus",
            "operator.read",
            "node.everything",
        ],
        key: Some(new_key()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{res}"
    );
    assert_eq!(c.call("1", "health", json!({})).await["ok"], true);
    let store = std::fs::read_to_string(gw.dir.join("devices/store.json")).expect("store.json");
    assert!(store.contains("operator.read"), "{store}");
    assert!(
        !store.contains("operator.bogus") && !store.contains("node.everything"),
        "unknown scopes stored: {store}"
    );
}
