//! §4.2 Method inventory and §4.3 Idempotency: a method the gateway does not have is refused by
//! name at both protocols (and the socket stays); a retried side effect with the same
//! `idempotencyKey` runs once and gets the first answer.

use serde_json::{json, Value};

use crate::message;
use crate::support::*;

#[tokio::test]
async fn unknown_methods_are_refused_by_name_at_both_protocols() {
    let gw = Gateway::start(&[]);
    for (min, max) in [(3, 3), (4, 4), (3, 4)] {
        let (mut c, _) = Connect {
            min,
            max,
            key: Some(new_key()),
            scopes: vec!["operator.read"],
            ..Default::default()
        }
        .run(&gw)
        .await;
        for (method, params) in [
            ("voicewake.get", json!({ "any": "thing" })),
            ("no.such.method", json!({})),
        ] {
            let r = c.call("u", method, params).await;
            assert_eq!(r["ok"], false, "{min}..{max} {method}: {r}");
            assert_eq!(
                r["error"]["code"], "INVALID_REQUEST",
                "{min}..{max} {method}: {r}"
            );
            assert_eq!(
                message(&r),
                format!("unknown method: {method}"),
                "{min}..{max}"
            );
            assert_eq!(c.call("h", "health", json!({})).await["ok"], true);
        }
    }
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
