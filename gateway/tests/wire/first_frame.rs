//! §2.1 Sequence (step 3) and §1.7 Close codes: the first frame after the challenge must be a
//! `connect` request; anything else is answered (when it was a request frame) and closed.

use serde_json::json;

use crate::message;
use crate::support::*;

#[tokio::test]
async fn a_first_frame_that_is_not_json_is_closed_1000_without_a_response() {
    let gw = Gateway::start(&[]);
    let mut c = gw.open().await;
    c.challenge().await;
    c.send_text("hello?").await;
    match c.next_within(5.0).await {
        Some(Next::Closed(code, _)) => assert_eq!(code, 1000),
        other => panic!("expected a bare close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_first_frame_that_is_no_request_frame_is_refused_then_closed_1008() {
    let gw = Gateway::start(&[]);
    // A request frame with a key the closed frame object does not allow (§1.2).
    let mut c = gw.open().await;
    c.challenge().await;
    c.send(&json!({ "type": "req", "id": "x", "method": "connect", "params": {}, "bogus": 1 }))
        .await;
    let res = c.response("x").await;
    assert!(message(&res).starts_with("invalid request frame"), "{res}");
    assert_eq!(c.closed().await.0, 1008);

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
async fn a_first_request_that_is_not_connect_is_refused_then_closed_with_that_reason() {
    let gw = Gateway::start(&[]);
    for method in ["health", "status"] {
        let mut c = gw.open().await;
        c.challenge().await;
        let res = c.call("1", method, json!({})).await;
        assert_eq!(res["ok"], false, "{method}: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{method}: {res}");
        assert_eq!(
            message(&res),
            "invalid handshake: first request must be connect",
            "{method}"
        );
        assert_eq!(
            c.closed().await,
            (
                1008,
                "invalid handshake: first request must be connect".into()
            ),
            "{method}"
        );
    }
}
