//! §3.4 Device pairing methods and events (and §3.1 pairing during connect, off loopback): a
//! device that must be approved raises `device.pair.requested` / `.resolved`, seen only by
//! operators with `operator.pairing`, who cannot grant scopes they lack.

use serde_json::json;

use crate::support::*;

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
