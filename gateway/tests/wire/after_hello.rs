//! §1.6 (last paragraph), §1.8 Validation and §2.1 step 5: after hello-ok, frames that are no
//! valid requests get `INVALID_REQUEST` answers (non-JSON is ignored), a second `connect` is
//! refused, bad params are refused by method, and the socket stays usable throughout.

use serde_json::json;

use crate::message;
use crate::support::*;

#[tokio::test]
async fn after_hello_bad_frames_get_errors_and_the_socket_stays() {
    let gw = Gateway::start(&[]);
    let clients = [
        ("device-less", Connect::default()),
        (
            "read device",
            Connect {
                key: Some(new_key()),
                scopes: vec!["operator.read"],
                ..Default::default()
            },
        ),
        (
            "admin device",
            Connect {
                key: Some(new_key()),
                scopes: vec!["operator.admin"],
                ..Default::default()
            },
        ),
    ];
    for (who, connect) in clients {
        let (mut c, res) = connect.run(&gw).await;
        assert_eq!(res["ok"], true, "{who}: {res}");
        // An event frame with an id → answered to that id...
        c.send(&json!({ "type": "event", "event": "hello", "id": "e1" }))
            .await;
        let r = c.response("e1").await;
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{who}: {r}");
        // ...without one → answered to "invalid".
        c.send(&json!({ "type": "event", "event": "x" })).await;
        let r = c.response("invalid").await;
        assert_eq!(r["ok"], false, "{who}: {r}");
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{who}: {r}");
        assert!(
            message(&r).starts_with("invalid request frame"),
            "{who}: {r}"
        );
        // Empty method: still an invalid request frame, not a close.
        c.send(&json!({ "type": "req", "id": "e", "method": "" }))
            .await;
        let r = c.response("e").await;
        assert!(
            message(&r).starts_with("invalid request frame"),
            "{who}: {r}"
        );
        // Text that is no JSON object: ignored.
        c.send_text("not json at all").await;
        c.send_text("[1,2,3]").await;
        c.send_text("42").await;
        // A second connect.
        let r = c.call("c2", "connect", json!({})).await;
        assert_eq!(
            message(&r),
            "connect is only valid as the first request",
            "{who}: {r}"
        );
        let r = c.call("h", "health", json!({})).await;
        assert_eq!(
            r["ok"], true,
            "{who}: socket unusable after bad frames: {r}"
        );
        // Params the method's schema does not allow.
        let r = c
            .call("p", "health", json!({ "probe": true, "unexpected": 1 }))
            .await;
        assert!(
            message(&r).starts_with("invalid health params"),
            "{who}: {r}"
        );
        // Responses echo arbitrary ids verbatim.
        let odd = "id with spaces, ünïcödé and \"quotes\"";
        assert_eq!(c.call(odd, "health", json!({})).await["id"], odd, "{who}");
    }
}
