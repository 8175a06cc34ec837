//! §1.4 Size limits and §1.2 Frames (UTF-8 text): before hello-ok a frame may be at most 64 KiB,
//! after it 25 MiB; larger frames are closed 1009, and a text frame that is not UTF-8 is closed
//! 1007, before hello-ok and after it.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn preauth_frames_are_capped_at_exactly_64_kib() {
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

    // 70 KiB that would be refused as invalid connect params (no params) if it were read.
    let mut c = gw.open().await;
    c.challenge().await;
    c.send_text(format!(
        r#"{{"type":"req","id":"{}","method":"connect"}}"#,
        "x".repeat(70 * 1024)
    ))
    .await;
    assert_eq!(c.closed().await.0, 1009);
}

#[tokio::test]
async fn after_hello_max_payload_applies_and_larger_frames_are_closed_1009() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let r = c.call("big", "health", json!({})).await;
    assert_eq!(r["ok"], true);
    // 100 KiB (over the pre-auth limit) is fine...
    let big = "y".repeat(100 * 1024);
    c.send(&json!({ "type": "req", "id": big, "method": "health", "params": {} }))
        .await;
    let r = c.response(&big).await;
    assert_eq!(r["ok"], true, "100 KiB frame after hello refused");
    // ...so is one MiB...
    let id = "m".repeat(1024 * 1024);
    c.send(&json!({ "type": "req", "id": id, "method": "health" }))
        .await;
    assert_eq!(
        c.response(&id).await["ok"],
        true,
        "1 MiB frame after hello refused"
    );
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

#[tokio::test]
async fn a_client_that_may_not_write_is_held_to_one_mib() {
    let gw = Gateway::start(&[]);
    for (scopes, max) in [
        (vec!["operator.read", "operator.pairing"], 1_048_576),
        (vec!["operator.write"], 26_214_400),
        (vec!["operator.admin"], 26_214_400),
    ] {
        let (_, res) = Connect {
            key: Some(new_key()),
            scopes: scopes.clone(),
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["payload"]["policy"]["maxPayload"], max, "{scopes:?}");
    }
    let (mut c, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    // Just under the cap is served...
    let id = "r".repeat(1_048_576 - 60);
    c.send(&json!({ "type": "req", "id": id, "method": "health" }))
        .await;
    assert_eq!(
        c.response(&id).await["ok"],
        true,
        "a frame under 1 MiB refused"
    );
    // ...one byte over is closed at its header: only the header is written, and the close
    // comes without the payload ever being sent (a gateway that waited to assemble the
    // message would never answer).
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::MaybeTlsStream;
    let mut header = vec![0x81u8, 0xff];
    header.extend_from_slice(&(1_048_577u64).to_be_bytes());
    header.extend_from_slice(&[9, 9, 9, 9]);
    match c.ws.get_mut() {
        MaybeTlsStream::Plain(tcp) => tcp.write_all(&header).await.expect("header"),
        _ => panic!("plain socket expected"),
    }
    loop {
        match c.next_within(10.0).await {
            Some(Next::Frame(f)) => assert_eq!(f["type"], "event", "{f}"),
            Some(Next::Closed(code, _)) => break assert_eq!(code, 1009),
            None => panic!("no close within 10 s of a header over the cap"),
        }
    }
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
