//! Power-cut safety of the trust store: the gateway is killed with SIGKILL at random moments
//! while three operators at once pair strangers, approve them and rotate their tokens. After every restart the store must
//! load (nothing kept aside as corrupt) and every approval the operator saw acknowledged must
//! still be there. And a full disk (a 4 MiB tmpfs as the state dir) refuses an approval with a
//! clear error, keeps what was acknowledged intact, and undoes the refused change (it is not
//! carried to the disk by a later write).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pincer_client::ClientError;
use pincer_gateway::operator::call::{call, CallOptions};
use serde_json::{json, Value};

mod support;
use support::{Gateway, TOKEN};

fn opts(port: u16, state: PathBuf, headers: Vec<(String, String)>) -> CallOptions {
    CallOptions {
        url: format!("ws://127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
        password: None,
        state_dir: state,
        timeout: Duration::from_secs(5),
        headers,
        bootstrap_token: None,
        scopes: None,
        tls_fingerprint: None,
    }
}

/// xorshift, seeded from the clock: different kill points every run, printed for replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Makes a stranger ask for pairing (through an untrusted proxy header, so it is not local)
/// and returns the request id from the refusal.
async fn stranger_request(port: u16, dir: PathBuf) -> Option<String> {
    stranger_request_from(port, dir, "198.51.100.9").await
}

/// [`stranger_request`] from `ip` (as the proxy header says).
async fn stranger_request_from(port: u16, dir: PathBuf, ip: &str) -> Option<String> {
    let o = opts(port, dir, vec![("X-Forwarded-For".into(), ip.into())]);
    match call(&o, "health", json!({})).await {
        Err(ClientError::Refused(e)) => e
            .details
            .as_ref()?
            .get("requestId")?
            .as_str()
            .map(str::to_owned),
        _ => None,
    }
}

/// Rounds of the SIGKILL test: `PINCER_CRASH_ROUNDS` (then no time bound; the 500 is
/// `PINCER_CRASH_ROUNDS=500`), else up to 200 within 25 s.
fn crash_rounds() -> (u32, Option<Duration>) {
    match std::env::var("PINCER_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => (n, None),
        None => (200, Some(Duration::from_secs(25))),
    }
}

/// Pairs strangers (request, approval, and every other time a token rotation) until aborted;
/// records each approval once the operator has seen it acknowledged.
async fn pairing_worker(
    port: u16,
    root: PathBuf,
    worker: u64,
    acknowledged: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    rotations: std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let op = root.join(format!("operator-{worker}"));
    for n in 0u64.. {
        let ip = format!("198.51.{}.{}", 100 + worker, n % 250 + 1);
        let dir = root.join(format!("w{worker}-{n}-{}", std::process::id()));
        let Some(request_id) = stranger_request_from(port, dir.clone(), &ip).await else {
            return;
        };
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(v) = call(
            &opts(port, op.clone(), vec![]),
            "device.pair.approve",
            json!({ "requestId": request_id }),
        )
        .await
        else {
            return;
        };
        let Some(device_id) = v["device"]["deviceId"].as_str().map(str::to_owned) else {
            return;
        };
        acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(device_id.clone());
        if n % 2 == 0 {
            let r = call(
                &opts(port, op.clone(), vec![]),
                "device.token.rotate",
                json!({ "deviceId": device_id, "role": "operator" }),
            )
            .await;
            if r.is_ok() {
                rotations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_survive_sigkill_at_any_moment() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    let root = std::env::temp_dir().join(format!("pincer-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let state = root.join("gateway");
    let op = root.join("operator");
    std::fs::create_dir_all(&root).expect("mkdir");
    // Behind a trusted proxy each stranger has its own address (the per-source cap on pending
    // requests would otherwise be what the test measures).
    let cfg = root.join("gateway.toml");
    std::fs::write(&cfg, "trusted_proxies = [\"127.0.0.1\"]\n").expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let rotations = Arc::new(AtomicU32::new(0));
    let (rounds, budget) = crash_rounds();
    let mut iterations = 0u32;
    let started = Instant::now();
    while iterations < rounds && budget.is_none_or(|b| started.elapsed() < b) {
        iterations += 1;
        let gw = Gateway::start_in(&state, TOKEN, &["--config", &cfg]);
        let port = gw.port;
        // After a restart, the store loaded: everything acknowledged so far is paired.
        let list = call(
            &opts(port, op.clone(), vec![]),
            "device.pair.list",
            json!({}),
        )
        .await
        .expect("list after restart");
        let paired: Vec<&str> = list["paired"]
            .as_array()
            .expect("paired")
            .iter()
            .filter_map(|d| d["deviceId"].as_str())
            .collect();
        for id in acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            assert!(
                paired.contains(&id.as_str()),
                "iteration {iterations}: acknowledged approval of {id} lost (seed {seed})"
            );
        }
        // Requests the last kill left pending are turned down, so the caps never fill.
        for p in list["pending"].as_array().into_iter().flatten() {
            if let Some(id) = p["requestId"].as_str() {
                let _ = call(
                    &opts(port, op.clone(), vec![]),
                    "device.pair.reject",
                    json!({ "requestId": id }),
                )
                .await;
            }
        }
        let status = call(&opts(port, op.clone(), vec![]), "status", json!({}))
            .await
            .expect("status");
        assert!(
            status["gateway"]["trustStoreRecoveredFrom"].is_null(),
            "iteration {iterations}: store was unreadable after SIGKILL (seed {seed})"
        );
        // Three operators pair, approve and rotate at once; the kill lands anywhere in that.
        let workers: Vec<_> = (0..3)
            .map(|w| {
                tokio::spawn(pairing_worker(
                    port,
                    root.clone(),
                    w,
                    acknowledged.clone(),
                    rotations.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5 + rng.next() % 80)).await;
        drop(gw); // SIGKILL
        for w in workers {
            w.abort();
            let _ = w.await;
        }
    }
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    eprintln!(
        "{iterations} kills, {} approvals and {} rotations acknowledged in {:?}",
        acknowledged.len(),
        rotations.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(iterations >= 50, "too few iterations to mean anything");
    assert!(acknowledged.len() >= 20, "too few approvals written");
    // A last start: everything is there.
    let gw = Gateway::start_in(&state, TOKEN, &["--config", &cfg]);
    let list = call(
        &opts(gw.port, op.clone(), vec![]),
        "device.pair.list",
        json!({}),
    )
    .await
    .expect("final list");
    let paired: Vec<Value> = list["paired"].as_array().cloned().unwrap_or_default();
    for id in &acknowledged {
        assert!(
            paired.iter().any(|d| d["deviceId"].as_str() == Some(id)),
            "{id} lost"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&root);
}

/// A tmpfs of `size` mounted at `dir` (root only), unmounted on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until a write fails (no space left).
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_refuses_the_approval_clearly_and_loses_nothing_acknowledged() {
    let root = std::env::temp_dir().join(format!("pincer-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let state = root.join("gateway");
    let Some(_disk) = Tmpfs::mount(&state, "4m") else {
        assert!(
            !support::netns::required(),
            "cannot mount a tmpfs (needs root) and the run requires it"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let op = root.join("operator");
    let gw = Gateway::start_in(&state, TOKEN, &[]);
    let port = gw.port;
    // One approval acknowledged while there is room.
    let first = stranger_request(port, root.join("first"))
        .await
        .expect("first request");
    call(
        &opts(port, op.clone(), vec![]),
        "device.pair.approve",
        json!({ "requestId": first }),
    )
    .await
    .expect("approval with room");
    let before = std::fs::read_to_string(state.join("devices/store.json")).expect("store");
    // The card fills up; a second device asks and the operator approves.
    let second = stranger_request(port, root.join("second")).await;
    fill(&state);
    let second = match second {
        Some(id) => id,
        None => panic!("the second request was not recorded"),
    };
    let refused = call(
        &opts(port, op.clone(), vec![]),
        "device.pair.approve",
        json!({ "requestId": second }),
    )
    .await;
    match &refused {
        Err(ClientError::Method(e)) => {
            assert_eq!(e.code, "UNAVAILABLE", "{e:?}");
            assert!(
                e.message.contains("No space left") || e.message.contains("space"),
                "the error says why: {e:?}"
            );
        }
        other => panic!("approval on a full disk must fail clearly, got {other:?}"),
    }
    // What was acknowledged is on disk, intact, and the gateway still answers.
    let after = std::fs::read_to_string(state.join("devices/store.json")).expect("store");
    assert!(
        serde_json::from_str::<Value>(&after).is_ok(),
        "store.json torn: {after}"
    );
    let first_device = serde_json::from_str::<Value>(&before).expect("json")["devices"]
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    // the operator (paired silently on loopback) and the first stranger
    assert_eq!(
        first_device.len(),
        2,
        "the first approval on disk: {before}"
    );
    for id in &first_device {
        assert!(after.contains(id.as_str()), "acknowledged device {id} lost");
    }
    call(&opts(port, op.clone(), vec![]), "health", json!({}))
        .await
        .expect("health on a full disk");
    // The refused approval was undone, not kept in memory: the request is pending again, a
    // later write (once there is room) does not carry it to the disk, and the operator can
    // approve it again.
    let pending = call(
        &opts(port, op.clone(), vec![]),
        "device.pair.list",
        json!({}),
    )
    .await
    .expect("device.pair.list on a full disk");
    assert!(
        pending["pending"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["requestId"] == second.as_str())),
        "the refused approval left its request pending: {pending}"
    );
    std::fs::remove_file(state.join("filler")).expect("free the space");
    call(
        &opts(port, op.clone(), vec![]),
        "device.pair.setupCode",
        json!({ "role": "node" }),
    )
    .await
    .expect("a change once there is room");
    let paired_on_disk = || -> usize {
        let on_disk: Value = serde_json::from_str(
            &std::fs::read_to_string(state.join("devices/store.json")).expect("store"),
        )
        .expect("store.json parses");
        on_disk["devices"].as_object().map_or(0, |m| m.len())
    };
    assert_eq!(
        paired_on_disk(),
        first_device.len(),
        "the approval the operator was told failed reached the disk with a later write"
    );
    call(
        &opts(port, op.clone(), vec![]),
        "device.pair.approve",
        json!({ "requestId": second }),
    )
    .await
    .expect("approving it again once there is room");
    assert_eq!(paired_on_disk(), first_device.len() + 1);
    drop(gw);
    let _ = std::fs::remove_dir_all(&root);
}
