//! §2.1 Sequence (step 2) and §1.1 Endpoint: the gateway speaks first, on any path, with a fresh
//! `connect.challenge`; §1.6 Timers: a socket that never connects is closed at the handshake
//! deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::*;

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

#[tokio::test]
async fn challenge_comes_first_with_a_fresh_uuid_v4_nonce_and_no_seq_and_each_socket_is_its_own() {
    let gw = Gateway::start(&[]);
    // Three sockets open at once, each read only after all are open.
    let mut socks = Vec::new();
    for _ in 0..3 {
        socks.push(gw.open().await);
    }
    let mut nonces = Vec::new();
    for c in &mut socks {
        let v = c.recv().await;
        assert_eq!(v["type"], "event");
        assert_eq!(v["event"], "connect.challenge");
        assert!(v.get("seq").is_none(), "challenge must carry no seq: {v}");
        assert!(v["payload"]["ts"]
            .as_u64()
            .is_some_and(|ts| ts.abs_diff(now_ms()) < 60_000));
        let nonce = v["payload"]["nonce"].as_str().expect("nonce").to_owned();
        assert_eq!(nonce.len(), 36, "uuid nonce: {v}");
        assert!(
            is_uuid_v4(&nonce),
            "nonce is not a lowercase UUIDv4: {nonce}"
        );
        nonces.push(nonce);
    }
    let distinct: BTreeSet<&String> = nonces.iter().collect();
    assert_eq!(distinct.len(), 3, "nonce must be per socket: {nonces:?}");
    // §2.6: connId is per socket too.
    let mut ids = BTreeSet::new();
    for (c, nonce) in socks.iter_mut().zip(&nonces) {
        let res = c.connect(Connect::default().params(nonce)).await;
        assert_eq!(res["ok"], true, "{res}");
        ids.insert(
            res["payload"]["server"]["connId"]
                .as_str()
                .expect("connId")
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 3, "connId must be per socket: {ids:?}");
}

#[tokio::test]
async fn websocket_upgrade_is_accepted_on_any_path() {
    let gw = Gateway::start(&[]);
    for path in ["/", "/ws", "/some/deep/path?x=1"] {
        let mut c = Client::open(&format!("{}{path}", gw.url())).await;
        let v = c.recv().await;
        assert_eq!(v["event"], "connect.challenge", "{path}: {v}");
    }
}

#[tokio::test]
async fn silent_sockets_are_closed_at_the_handshake_deadline() {
    let gw = Gateway::start(&["--handshake-timeout-ms", "300"]);
    let mut c = gw.open().await;
    let t = Instant::now();
    c.challenge().await;
    let (code, _) = c.closed().await;
    assert_eq!(code, 1000);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        t.elapsed()
    );
}
