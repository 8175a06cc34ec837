//! §2.2 ConnectParams (closed object) and §1.8 Validation: `connect` params that break the
//! schema are refused as `invalid connect params`, and the socket is closed 1008 with that
//! reason, truncated to 120 bytes (§1.7).

use serde_json::{json, Value};

use crate::message;
use crate::support::*;

/// How a case spoils the valid params; `None` leaves them out.
type Spoil = Option<fn(&mut Value)>;

#[tokio::test]
async fn connect_params_that_break_the_schema_are_refused_then_closed_1008() {
    let gw = Gateway::start(&[]);
    // (what, how the params are spoiled, a name the message must contain)
    let cases: [(&str, Spoil, Option<&str>); 5] = [
        // client.id is an enum.
        (
            "client.id outside the enum",
            Some(|p| p["client"]["id"] = json!("ios-node")),
            None,
        ),
        // §1.3: the offending property is named.
        (
            "unknown key at the params root",
            Some(|p| p["bogus"] = json!(1)),
            Some("bogus"),
        ),
        (
            "unknown key inside client",
            Some(|p| p["client"]["color"] = json!("red")),
            None,
        ),
        (
            "client.mode outside the enum",
            Some(|p| p["client"]["mode"] = json!("robot")),
            None,
        ),
        // `connect` needs params.
        ("no params at all", None, None),
    ];
    for (what, spoil, names) in cases {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        let mut frame = json!({ "type": "req", "id": "c1", "method": "connect" });
        if let Some(spoil) = spoil {
            let mut p = Connect::default().params(&nonce);
            spoil(&mut p);
            frame["params"] = p;
        }
        c.send(&frame).await;
        let res = c.response("c1").await;
        assert_eq!(res["ok"], false, "{what}: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{what}: {res}");
        assert!(
            message(&res).starts_with("invalid connect params"),
            "{what}: {res}"
        );
        if let Some(name) = names {
            assert!(message(&res).contains(name), "{what}: {res}");
        }
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1008, "{what}");
        assert!(
            reason.starts_with("invalid connect params"),
            "{what}: {reason}"
        );
        assert!(
            reason.len() <= 120,
            "{what}: close reason over 120 bytes: {reason:?}"
        );
    }
}
