//! The node's abuse suite: the release `pincer-node` (the binary a board runs, from
//! `PINCER_ABUSE_NODE`) inside a 256 MB memory cgroup, against a gateway written in the test
//! that misbehaves as a rogue gateway (or anyone on the path of a plain `ws://` link) can:
//! frames as large as the cap allows before and after `hello-ok`, trees of millions of values,
//! a megabyte nonce, and a gateway that stops reading while the node has megabytes to send.
//! After each: the process is alive, the OOM killer never fired, the node is back on a new
//! link and answers an invoke, and resident memory comes back near idle.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::memcg::{self, MemCgroup};
use support::mock::{tmp, MockGateway, NodeProc, Ws, STEP, TOKEN};

/// What a Pi leaves the node.
const LIMIT: u64 = 256 << 20;
/// "Near idle": resident memory within this of what it was before, once the attack is over.
const NEAR_IDLE_KIB: u64 = 32 << 10;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The release node in a fresh cgroup, dialling `gw`; `None` (after saying why) only when
/// the run does not require the suite.
fn node(name: &str, gw: &MockGateway, dir: &std::path::Path) -> Option<(NodeProc, MemCgroup)> {
    let ready = memcg::release_binary("PINCER_ABUSE_NODE")
        .and_then(|bin| MemCgroup::create(name, LIMIT).map(|cg| (bin, cg)));
    let (bin, cg) = match ready {
        Ok(r) => r,
        Err(why) => {
            assert!(!memcg::required(), "the abuse suite cannot run: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
    };
    let node = NodeProc::spawn_command(
        cg.command(&bin),
        &["--gateway", &gw.url, "--token", TOKEN, "--caps", "system"],
        &dir.join("state"),
        dir.join("node.log"),
    );
    Some((node, cg))
}

/// Accepts the node's next socket and upgrades it, sending nothing.
async fn raw_accept(gw: &MockGateway) -> Ws {
    let (tcp, _) = tokio::time::timeout(STEP, gw.listener.accept())
        .await
        .expect("the node dials in time")
        .expect("accept");
    tokio::time::timeout(STEP, tokio_tungstenite::accept_async(tcp))
        .await
        .expect("upgrade in time")
        .expect("upgrade")
}

/// Waits until the node drops `ws` (bounded): it refused what it was sent.
async fn dropped(mut ws: Ws, what: &str) {
    use futures_util::StreamExt;
    let by = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(by, ws.next()).await {
            Err(_) => panic!("the node kept the link after {what}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The checks after an attack: alive, no OOM kill, memory back near `idle_kib`; prints the
/// figures.
async fn after(node: &mut NodeProc, cg: &MemCgroup, idle_kib: u64, attack: &str) {
    let pid = node.child.id();
    let (_, peak) = memcg::rss_kib(pid);
    assert!(node.alive(), "{attack}: the node died:\n{}", node.log());
    assert_eq!(cg.oom_kills(), 0, "{attack}: the OOM killer fired");
    let rss = memcg::rss_settled(pid, idle_kib + NEAR_IDLE_KIB, Duration::from_secs(30)).await;
    eprintln!(
        "abuse [{attack}]: node peak RSS {} MB (cgroup peak {} MB, limit {} MB), idle {} MB, after {} MB, OOM kills 0",
        peak >> 10,
        cg.peak().map_or("?".into(), |p| (p >> 20).to_string()),
        LIMIT >> 20,
        idle_kib >> 10,
        rss >> 10,
    );
    assert!(
        rss <= idle_kib + NEAR_IDLE_KIB,
        "{attack}: resident memory stayed at {} MB (idle {} MB)",
        rss >> 10,
        idle_kib >> 10
    );
}

fn zeros(n: usize) -> String {
    vec!["0"; n].join(",")
}

/// Finding 6: what a rogue gateway can send. Before the challenge: a 25 MB frame of
/// `[0,0,…]` (under the frame cap, ~400 MB as a tree) and a 1 MB nonce. After `hello-ok`: a
/// 20 MB event, invokes whose params are 20 MB trees (as an object and as `paramsJSON`), and a
/// 40 MB frame over the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_gateway() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tmp("abuse-rogue");
    let gw = MockGateway::bind().await;
    let Some((mut node, cg)) = node("rogue", &gw, &dir) else {
        return;
    };
    // A well-behaved first link, to know the node's idle size.
    let mut conn = gw.accept().await;
    conn.hello(60_000, None).await;
    let r = conn
        .invoke(json!({ "id": "warm", "nodeId": "n", "command": "system.which", "paramsJSON": "{\"bins\":[\"sh\"]}" }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let idle = memcg::rss_kib(node.child.id()).0;
    drop(conn);

    // Before the challenge: 25 MB of zeros.
    let mut ws = raw_accept(&gw).await;
    ws.send(Message::text(format!(
        r#"{{"type":"event","event":"connect.challenge","payload":{{"x":[{}]}}}}"#,
        zeros(12_000_000)
    )))
    .await
    .expect("send");
    dropped(ws, "a 25 MB tree before the challenge").await;
    // A megabyte nonce.
    let mut ws = raw_accept(&gw).await;
    let nonce = "n".repeat(1 << 20);
    ws.send(Message::text(
        json!({ "type": "event", "event": "connect.challenge", "payload": { "nonce": nonce, "ts": 1 } })
            .to_string(),
    ))
    .await
    .expect("send");
    dropped(ws, "a 1 MB nonce").await;

    // After hello-ok.
    let mut conn = gw.accept().await;
    assert!(
        conn.frame.to_string().len() < 16_384,
        "the connect after a rogue challenge is ordinary"
    );
    conn.hello(60_000, None).await;
    conn.ws
        .send(Message::text(format!(
            r#"{{"type":"event","event":"presence","payload":{{"presence":[{}]}}}}"#,
            zeros(10_000_000)
        )))
        .await
        .expect("send");
    conn.ws
        .send(Message::text(format!(
            r#"{{"type":"event","event":"node.invoke.request","payload":{{"id":"tree","nodeId":"n","command":"system.which","params":{{"bins":[{}]}}}}}}"#,
            zeros(10_000_000)
        )))
        .await
        .expect("send");
    let refused = conn.results(&["tree"], &[]).await;
    assert_eq!(refused["tree"]["ok"], false, "{:?}", refused["tree"]);
    let text = format!(r#"{{"bins":[{}]}}"#, zeros(10_000_000));
    let r = conn
        .invoke(
            json!({ "id": "text", "nodeId": "n", "command": "system.which", "paramsJSON": text }),
        )
        .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    // Over the cap: the node drops the link rather than take it in.
    let _ = tokio::time::timeout(
        STEP,
        conn.ws.send(Message::text(format!(
            r#"{{"type":"event","event":"tick","payload":{{"x":"{}"}}}}"#,
            "x".repeat(40 << 20)
        ))),
    )
    .await;
    // …and comes back by itself, serving as before.
    let mut conn = gw.accept().await;
    conn.hello(60_000, None).await;
    let r = conn
        .invoke(json!({ "id": "after", "nodeId": "n", "command": "system.which", "paramsJSON": "{\"bins\":[\"sh\"]}" }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    after(
        &mut node,
        &cg,
        idle,
        "rogue gateway: 25 MB trees, 1 MB nonce, 40 MB frame",
    )
    .await;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 7: the gateway stops reading while the node has megabytes of results to send. The
/// node used to block in a write inside the loop that also ran the watchdog and the shutdown:
/// wedged for good, deaf to SIGTERM. Now its outbox (64 MiB) fills, it drops the link and
/// dials again; SIGTERM ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_reading() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tmp("abuse-stalled");
    let gw = MockGateway::bind().await;
    let Some((mut node, cg)) = node("stalled", &gw, &dir) else {
        return;
    };
    let mut conn = gw.accept().await;
    conn.hello_with(60_000, None, 25 << 20).await;
    let r = conn
        .invoke(json!({ "id": "warm", "nodeId": "n", "command": "system.which", "paramsJSON": "{\"bins\":[\"sh\"]}" }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let idle = memcg::rss_kib(node.child.id()).0;
    // ~4 MB of distinct paths that all resolve: each answer is twice that.
    let bins: Vec<String> = (0..2_000)
        .map(|k| format!("/{}bin/sh", "./".repeat(k)))
        .collect();
    let params = json!({ "bins": bins }).to_string();
    // From here on nothing the node sends is read. Invokes keep coming (four at a time, the
    // node's concurrency) until the node gives the link up and dials again.
    let (mut sink, _unread) = futures_util::StreamExt::split(conn.ws);
    let second = tokio::spawn(async move {
        let c = gw.accept_within(Duration::from_secs(120)).await;
        (gw, c)
    });
    let mut n = 0u64;
    while !second.is_finished() {
        for _ in 0..4 {
            n += 1;
            let frame = json!({ "type": "event", "event": "node.invoke.request", "payload": {
                "id": format!("big-{n}"), "nodeId": "n", "command": "system.which", "paramsJSON": params } });
            if tokio::time::timeout(
                Duration::from_secs(1),
                sink.send(Message::text(frame.to_string())),
            )
            .await
            .map_or(true, |r| r.is_err())
            {
                break; // the node stopped reading too, or dropped the link
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_gw, again) = second.await.expect("task");
    let Some(mut again) = again else {
        let log = node.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "the node did not dial again within 120 s of the gateway no longer reading ({n} invokes sent, RSS {:?} KiB); log tail:\n{}",
            memcg::rss_kib(node.child.id()),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    eprintln!("the node gave the stalled link up after {n} invokes");
    again.hello(60_000, None).await;
    let r = again
        .invoke(json!({ "id": "after", "nodeId": "n", "command": "system.which", "paramsJSON": "{\"bins\":[\"sh\"]}" }))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    drop(sink);
    after(
        &mut node,
        &cg,
        idle,
        "a gateway that stops reading, 8 MB answers",
    )
    .await;
    // SIGTERM is heard whatever the link is doing.
    let pid = node.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let by = Instant::now() + STEP;
    while node.alive() {
        assert!(Instant::now() < by, "the node ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}
