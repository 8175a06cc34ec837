//! `location.get` from a real gpsd fed by `gpsfake` with the NMEA log in `tests/nmea/`, through
//! pincer-gateway: the log's position within a metre, its accuracy; gpsd stopped →
//! `LOCATION_UNAVAILABLE`; gpsd back → answers again; a cached fix answers at once.
//!
//! Needs `gpsfake` (Debian's gpsd + gpsd-clients, installed by `scripts/test.sh`); without it the
//! test says so and passes, unless `PINCER_REQUIRE_GPSD=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pincer_client::ClientError;
use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};

mod support;
use pincer_client::identity::{Identity, IdentityFiles};
use pincer_node::commands::{Registry, AVAILABLE_CAPS};
use pincer_node::config::NodeConfig;
use pincer_node::invoke::Dispatcher;
use pincer_node::link::Node;
use serde_json::{json, Value};
use support::gateway::Gw;

const TOKEN: &str = "location-test-token";
// The log's position: 5231.2005 N, 01324.2972 E.
const LAT: f64 = 52.0 + 31.2005 / 60.0;
const LON: f64 = 13.0 + 24.2972 / 60.0;

/// gpsfake runs gpsd as its child: the whole process group goes together.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        // `pkill -g` names the process group exactly (the child is its own group leader).
        let _ = Command::new("pkill")
            .args(["-KILL", "-g", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn gpsfake(port: u16) -> Proc {
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nmea/berlin.nmea");
    use std::os::unix::process::CommandExt;
    let child = Command::new("gpsfake")
        .process_group(0)
        .args(["-q", "-n", "-c", "0.05", "-P", &port.to_string()])
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gpsfake");
    // Wait for its gpsd to listen.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "gpsfake's gpsd did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Proc(child)
}

/// Distance in metres between two nearby points (equirectangular is plenty at this scale).
fn metres(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let r = 6_371_000.0_f64;
    let x = (lon2 - lon1).to_radians() * ((lat1 + lat2) / 2.0).to_radians().cos();
    let y = (lat2 - lat1).to_radians();
    (x * x + y * y).sqrt() * r
}

async fn location(op: &CallOptions, node: &str, params: Value) -> Result<Value, ClientError> {
    call(op, "node.invoke", json!({ "nodeId": node, "command": "location.get", "params": params, "idempotencyKey": format!("loc-{}", pincer_gateway::now_ms()) }))
        .await
        .map(|v| v["payload"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_from_gpsd_through_the_gateway() {
    if Command::new("gpsfake")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var("PINCER_REQUIRE_GPSD").map_or(true, |v| v != "1"),
            "gpsfake not installed"
        );
        eprintln!("skipping: gpsfake not installed (apt-get install gpsd gpsd-clients)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pincer-location-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gps_port = free_port();
    let gps = gpsfake(gps_port);

    // Gateway in-process, node as a library instance with `--caps location`.
    let gw = Gw::start(Overrides {
        port: Some(0),
        state_dir: Some(dir.join("gw")),
        token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    let port = gw.port;
    let node_cfg = NodeConfig::resolve(
        pincer_node::config::Overrides {
            gateway: Some(format!("ws://127.0.0.1:{port}")),
            token: Some(TOKEN.into()),
            caps: Some("location".into()),
            state_dir: Some(dir.join("node")),
            gpsd: Some(format!("127.0.0.1:{gps_port}")),
            ..Default::default()
        },
        AVAILABLE_CAPS,
    )
    .expect("node config");
    let identity =
        Identity::load_or_create(IdentityFiles::node(&dir.join("node"))).expect("identity");
    let node_id = identity.device_id.clone();
    let registry = Registry::for_caps(&node_cfg.caps, &node_cfg.setup());
    let node = Node::new(node_cfg, identity, Arc::new(Dispatcher::new(registry)));
    let (node_stop, node_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(async move {
        node.run(async move {
            let _ = node_stop_rx.await;
        })
        .await
    });
    let mut op = CallOptions::new(format!("ws://127.0.0.1:{port}"), dir.join("operator"));
    op.token = Some(TOKEN.into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !call(&op, "node.describe", json!({ "nodeId": node_id }))
        .await
        .is_ok_and(|v| v["connected"] == true)
    {
        assert!(Instant::now() < deadline, "node never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A fresh fix from the log.
    let v = location(&op, &node_id, json!({ "timeoutMs": 10000 }))
        .await
        .expect("location.get");
    let (lat, lon) = (
        v["lat"].as_f64().expect("lat"),
        v["lon"].as_f64().expect("lon"),
    );
    let off = metres(lat, lon, LAT, LON);
    assert!(
        off < 1.0,
        "position {lat},{lon} is {off:.2} m from the log's"
    );
    assert_eq!(v["source"], "gps");
    assert_eq!(v["isPrecise"], true, "3D fix in the log");
    assert!(
        (v["altitudeMeters"].as_f64().expect("altitude") - 34.5).abs() < 0.01,
        "{v}"
    );
    // gpsd's horizontal error estimate from the log's HDOP 1.3.
    assert!(
        v["accuracyMeters"]
            .as_f64()
            .is_some_and(|a| a > 0.0 && a < 100.0),
        "{v}"
    );
    // ISO-8601: the fix's own time when gpsd has it, else when it was received.
    let ts = v["timestamp"].as_str().expect("timestamp");
    assert!(
        ts.len() >= 20
            && ts.as_bytes()[4] == b'-'
            && ts.as_bytes()[10] == b'T'
            && ts.ends_with('Z'),
        "{ts}"
    );
    for k in ["accuracy", "altitude", "speed", "heading"] {
        assert!(v.get(k).is_none(), "reference field names only, found {k}");
    }

    // gpsd goes away: a typed error, quickly, and the node still serves.
    drop(gps);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", gps_port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "gpsd still listening after being killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    match location(&op, &node_id, json!({})).await {
        Err(ClientError::Method(e)) => {
            assert!(e.message.starts_with("LOCATION_UNAVAILABLE"), "{e:?}");
            assert_eq!(
                e.details
                    .as_ref()
                    .and_then(|d| d["nodeError"]["code"].as_str()),
                Some("LOCATION_UNAVAILABLE")
            );
        }
        other => panic!("expected LOCATION_UNAVAILABLE, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // A cached fix within maxAgeMs still answers at once.
    let t = Instant::now();
    let v = location(&op, &node_id, json!({ "maxAgeMs": 600000 }))
        .await
        .expect("cached fix");
    assert!(
        metres(
            v["lat"].as_f64().unwrap_or(0.0),
            v["lon"].as_f64().unwrap_or(0.0),
            LAT,
            LON
        ) < 1.0
    );
    assert!(t.elapsed() < Duration::from_secs(1));

    // gpsd is back: answers again.
    let _gps = gpsfake(gps_port);
    let v = location(&op, &node_id, json!({ "timeoutMs": 10000 }))
        .await
        .expect("location after gpsd returned");
    assert!(
        metres(
            v["lat"].as_f64().unwrap_or(0.0),
            v["lon"].as_f64().unwrap_or(0.0),
            LAT,
            LON
        ) < 1.0
    );

    // Bad params are the caller's error.
    match location(&op, &node_id, json!({ "desiredAccuracy": "exact" })).await {
        Err(ClientError::Method(e)) => assert!(e.message.contains("INVALID_REQUEST"), "{e:?}"),
        other => panic!("{other:?}"),
    }

    let _ = node_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), node_task).await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;

/// The agent's `nodes` tool on a real node: the model (a fake provider speaking the
/// chat-completions stream) asks for `location_get`; the gateway invokes `location.get` on this
/// pincer-node, whose gpsd is fed by gpsfake; the position goes back to the model in the next
/// request, and the model's answer is the chat's final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_the_node_where_it_is() {
    if Command::new("gpsfake")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var("PINCER_REQUIRE_GPSD").map_or(true, |v| v != "1"),
            "gpsfake not installed"
        );
        eprintln!("skipping: gpsfake not installed (apt-get install gpsd gpsd-clients)");
        return;
    }
    use fake_provider::{Dialect, FakeProvider, Reply};
    use pincer_agent::config::{AgentConfig, AgentSection, ModelsConfig, ProviderConfig};
    let dir = std::env::temp_dir().join(format!("pincer-agent-location-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gps_port = free_port();
    let _gps = gpsfake(gps_port);
    let fake = FakeProvider::start(Dialect::Completions).await;
    let identity =
        Identity::load_or_create(IdentityFiles::node(&dir.join("node"))).expect("identity");
    let node_id = identity.device_id.clone();
    fake.push(Reply::ToolCall {
        id: "call_loc_1".into(),
        name: "nodes".into(),
        arguments:
            json!({ "action": "location_get", "node": node_id, "desiredAccuracy": "precise" })
                .to_string(),
        preamble: Some("Let me check.".into()),
    });
    fake.push(Reply::Text {
        chunks: vec!["You are in ".into(), "Berlin.".into()],
        delay_ms: 0,
    });
    let base_url = fake.base_url();
    let gw = support::gateway::Gw::start_with(
        Overrides {
            port: Some(0),
            state_dir: Some(dir.join("gw")),
            token: Some(TOKEN.into()),
            ..Default::default()
        },
        |cfg| {
            let mut models = ModelsConfig::default();
            models.providers.insert(
                "fake".into(),
                ProviderConfig {
                    base_url,
                    api: pincer_agent::provider::Api::OpenAiCompletions,
                    api_key: Some("k".into()),
                    models: vec![],
                    timeout_seconds: None,
                },
            );
            let section = AgentSection {
                model: Some("fake/fake-model".into()),
                ..Default::default()
            };
            cfg.agent = AgentConfig::resolve(&section, &models, &cfg.state_dir);
        },
    )
    .await;
    let port = gw.port;
    let node_cfg = NodeConfig::resolve(
        pincer_node::config::Overrides {
            gateway: Some(format!("ws://127.0.0.1:{port}")),
            token: Some(TOKEN.into()),
            caps: Some("location".into()),
            state_dir: Some(dir.join("node")),
            gpsd: Some(format!("127.0.0.1:{gps_port}")),
            ..Default::default()
        },
        AVAILABLE_CAPS,
    )
    .expect("node config");
    let registry = Registry::for_caps(&node_cfg.caps, &node_cfg.setup());
    let node = Node::new(node_cfg, identity, Arc::new(Dispatcher::new(registry)));
    let (node_stop, node_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(async move {
        node.run(async move {
            let _ = node_stop_rx.await;
        })
        .await
    });
    let mut op = CallOptions::new(format!("ws://127.0.0.1:{port}"), dir.join("operator"));
    op.token = Some(TOKEN.into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !call(&op, "node.describe", json!({ "nodeId": node_id }))
        .await
        .is_ok_and(|v| v["connected"] == true)
    {
        assert!(Instant::now() < deadline, "node never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut s = pincer_gateway::operator::call::session(&op)
        .await
        .expect("session");
    s.request(
        "chat.send",
        &json!({ "sessionKey": "main", "message": "Where is the board?", "idempotencyKey": "where-1" }),
    )
    .await
    .expect("chat.send");
    let fin = loop {
        let e = tokio::time::timeout(Duration::from_secs(30), s.next_event())
            .await
            .expect("a final within 30 s")
            .expect("open");
        let p = e.payload.unwrap_or_default();
        if e.event.as_str() == "chat"
            && p["runId"] == "where-1"
            && matches!(p["state"].as_str(), Some("final" | "error" | "aborted"))
        {
            break p;
        }
    };
    assert_eq!(fin["state"], "final", "{fin}");
    assert_eq!(
        fin["message"]["content"][0]["text"], "You are in Berlin.",
        "{fin}"
    );
    // The second model call carried the node's real position as the tool result.
    let reqs = fake.wait_requests(2, Duration::from_secs(5)).await;
    let tool_msg = reqs[1].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .expect("a tool message");
    let result: Value =
        serde_json::from_str(tool_msg["content"].as_str().unwrap_or("")).expect("JSON");
    let off = metres(
        result["lat"].as_f64().unwrap_or(0.0),
        result["lon"].as_f64().unwrap_or(0.0),
        LAT,
        LON,
    );
    assert!(off < 1.0, "the model got {result}");
    assert_eq!(result["source"], "gps");
    let _ = node_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), node_task).await;
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
