//! §1.7 Close codes: on SIGTERM or SIGINT every client gets a `shutdown` event, then a close
//! 1012 "service restart", and the process exits cleanly; a client's own close is answered
//! with a close frame.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn sigterm_and_sigint_send_shutdown_to_every_client_then_close_1012() {
    for signal in ["-TERM", "-INT"] {
        let mut gw = Gateway::start(&[]);
        let (mut a, _) = Connect::default().run(&gw).await;
        let (mut b, _) = Connect {
            key: Some(new_key()),
            scopes: vec!["operator.read"],
            ..Default::default()
        }
        .run(&gw)
        .await;
        let pid = gw.child.id().to_string();
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        for c in [&mut a, &mut b] {
            let ev = c
                .event("shutdown", 5.0)
                .await
                .expect("shutdown event before the close");
            assert!(ev["payload"]["reason"].is_string(), "{signal}: {ev}");
            assert!(ev["seq"].is_u64(), "broadcast events carry seq: {ev}");
            assert_eq!(
                c.closed().await,
                (1012, "service restart".into()),
                "{signal}"
            );
        }
        let t = Instant::now();
        loop {
            if let Some(st) = gw.child.try_wait().expect("wait") {
                assert!(st.success(), "{signal}: gateway exit status {st:?}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "gateway still running 5 s after {signal}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;
    let gw = Gateway::start(&[]);
    let (mut c, _) = Connect::default().run(&gw).await;
    c.ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .expect("send close");
    // A clean close: the gateway answers with its own Close frame (a dropped TCP connection
    // would read as 1006).
    assert_eq!(c.closed().await.0, 1000);
}
