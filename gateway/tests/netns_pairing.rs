//! A second host on this machine: a network namespace joined to the root namespace by a veth
//! pair. A client there is a stranger: it must be approved by an operator, and revoking it
//! closes its socket at once. The same kind of client on loopback is paired silently.
//!
//! Needs root and iproute2. Without them the test says so and passes, unless
//! `PINCER_REQUIRE_NETNS=1` (set by `scripts/test.sh`), in which case it fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::netns::{required, Netns};
use support::{Gateway, BIN, TOKEN};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pincer-netns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `pincer-gateway ARGS` (inside `ns` when given).
fn cli(ns: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run cli")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pending_request_ids(url: &str, state: &str) -> Vec<String> {
    let o = cli(
        None,
        &[
            "devices",
            "list",
            "--json",
            "--url",
            url,
            "--state-dir",
            state,
            "--token",
            TOKEN,
        ],
    );
    assert!(o.status.success(), "devices list failed: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["pending"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["requestId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn stranger_needs_approval_and_revocation_closes_its_socket() {
    let tag = std::process::id() % 60000;
    let Some(ns) = Netns::create(tag) else {
        assert!(
            !required(),
            "network namespaces unavailable (need root and iproute2)"
        );
        eprintln!("skipping: network namespaces unavailable (need root and iproute2)");
        return;
    };
    let gw_state = tmp("gw");
    let token = TOKEN;
    let gw = Gateway::start_in(&gw_state, token, &["--bind", "lan"]);
    let host_ip = format!("10.254.{}.1", tag % 250);
    let remote_url = format!("ws://{host_ip}:{}", gw.port);
    let local_url = format!("ws://127.0.0.1:{}", gw.port);
    let op_state = gw_state.to_str().expect("utf8 path");
    let stranger = tmp("stranger");
    let s = stranger.to_str().expect("utf8 path");

    // 1. A new device from the other host, with the right token: refused, pending request made.
    let o = cli(
        Some(&ns.name),
        &[
            "call",
            "health",
            "--url",
            &remote_url,
            "--token",
            token,
            "--state-dir",
            s,
        ],
    );
    assert!(
        !o.status.success(),
        "stranger got in without approval: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("pairing required"),
        "expected pairing required, got: {}",
        text(&o)
    );
    let ids = pending_request_ids(&local_url, op_state);
    assert_eq!(ids.len(), 1, "one pending request expected, got {ids:?}");

    // 2. The operator approves it; the next connect works and yields a device token.
    let o = cli(
        None,
        &[
            "devices",
            "approve",
            &ids[0],
            "--url",
            &local_url,
            "--state-dir",
            op_state,
            "--token",
            token,
        ],
    );
    assert!(o.status.success(), "approve failed: {}", text(&o));
    let o = cli(
        Some(&ns.name),
        &[
            "call",
            "health",
            "--url",
            &remote_url,
            "--token",
            token,
            "--state-dir",
            s,
        ],
    );
    assert!(o.status.success(), "approved device refused: {}", text(&o));
    assert!(
        stranger.join("identity/device-auth.json").exists(),
        "device token was not saved"
    );

    // 3. With a socket open from the other host, revoking the device closes it at once.
    let mut watcher = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            BIN,
            "events",
            "--url",
            &remote_url,
            "--token",
            token,
            "--state-dir",
            s,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watcher");
    std::thread::sleep(Duration::from_millis(700));
    let device_id = {
        let o = cli(
            Some(&ns.name),
            &[
                "call",
                "health",
                "--url",
                &remote_url,
                "--token",
                token,
                "--state-dir",
                s,
                "--json",
            ],
        );
        assert!(o.status.success());
        let id: serde_json::Value = serde_json::from_slice(
            &std::fs::read(stranger.join("identity/device.json")).expect("identity"),
        )
        .expect("json");
        id["deviceId"].as_str().expect("deviceId").to_owned()
    };
    let revoked_at = Instant::now();
    let o = cli(
        None,
        &[
            "devices",
            "revoke",
            &device_id,
            "--url",
            &local_url,
            "--state-dir",
            op_state,
            "--token",
            token,
        ],
    );
    assert!(o.status.success(), "revoke failed: {}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = watcher.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "revoked device's socket still open after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut watcher.stderr.take().expect("stderr"), &mut err);
    assert!(
        !status.success() && err.contains("4001"),
        "expected close 4001, got {status:?}: {err}"
    );
    eprintln!(
        "socket closed {} ms after revoke",
        revoked_at.elapsed().as_millis()
    );

    // 4. Its next connect is refused again.
    let o = cli(
        Some(&ns.name),
        &[
            "call",
            "health",
            "--url",
            &remote_url,
            "--token",
            token,
            "--state-dir",
            s,
        ],
    );
    assert!(
        !o.status.success(),
        "revoked device got back in: {}",
        text(&o)
    );

    // 5. A new device on loopback is approved silently...
    let local_dev = tmp("local");
    let l = local_dev.to_str().expect("utf8 path");
    let o = cli(
        None,
        &[
            "call",
            "health",
            "--url",
            &local_url,
            "--token",
            token,
            "--state-dir",
            l,
        ],
    );
    assert!(
        o.status.success(),
        "loopback device not paired silently: {}",
        text(&o)
    );

    // 6. ...but not when it arrives with forwarding headers from a proxy that is not trusted.
    let proxied = tmp("proxied");
    let p = proxied.to_str().expect("utf8 path");
    let o = cli(
        None,
        &[
            "call",
            "health",
            "--url",
            &local_url,
            "--token",
            token,
            "--state-dir",
            p,
            "--header",
            "X-Forwarded-For: 203.0.113.7",
        ],
    );
    assert!(
        !o.status.success(),
        "proxied client was paired silently: {}",
        text(&o)
    );
    assert!(text(&o).contains("pairing required"), "{}", text(&o));

    // 7. A new device from this host's own tailnet address (100.64.0.0/10 on a local interface)
    //    is this very host: paired silently. A tailnet peer in the namespace is not.
    let tail_host = format!("100.100.{}.1", tag % 250);
    let tail_peer = format!("100.100.{}.2", tag % 250);
    let ok_host = Command::new("ip")
        .args([
            "addr",
            "add",
            &format!("{tail_host}/32"),
            "dev",
            &ns.host_if,
        ])
        .status()
        .is_ok_and(|s| s.success());
    let ok_peer = Command::new("ip")
        .args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{tail_peer}/32"),
            "dev",
            &ns.peer_if,
        ])
        .status()
        .is_ok_and(|s| s.success());
    let ok_route = Command::new("ip")
        .args([
            "-n",
            &ns.name,
            "route",
            "add",
            &format!("{tail_host}/32"),
            "dev",
            &ns.peer_if,
            "src",
            &tail_peer,
        ])
        .status()
        .is_ok_and(|s| s.success());
    let ok_back = Command::new("ip")
        .args([
            "route",
            "add",
            &format!("{tail_peer}/32"),
            "dev",
            &ns.host_if,
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok_host && ok_peer && ok_route && ok_back,
        "could not add tailnet addresses"
    );
    let tail_url = format!("ws://{tail_host}:{}", gw.port);
    let own = tmp("tail-own");
    let o = cli(
        None,
        &[
            "call",
            "health",
            "--url",
            &tail_url,
            "--token",
            token,
            "--state-dir",
            own.to_str().expect("utf8"),
        ],
    );
    assert!(
        o.status.success(),
        "device on this host's tailnet address not paired silently: {}",
        text(&o)
    );
    let peer = tmp("tail-peer");
    let o = cli(
        Some(&ns.name),
        &[
            "call",
            "health",
            "--url",
            &tail_url,
            "--token",
            token,
            "--state-dir",
            peer.to_str().expect("utf8"),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("pairing required"),
        "tailnet peer paired silently: {}",
        text(&o)
    );

    for d in [&gw_state, &stranger, &local_dev, &proxied, &own, &peer] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A board's namespace with its loopback up: the namespace, the host's address on its link and
/// the board's; `None` (a skip, or a failure when [`required`]) without namespaces.
fn board_namespace(tag: u32) -> Option<(Netns, String, String)> {
    let Some(ns) = Netns::create(tag) else {
        assert!(
            !required(),
            "network namespaces unavailable (need root and iproute2)"
        );
        eprintln!("skipping: network namespaces unavailable (need root and iproute2)");
        return None;
    };
    let host_ip = support::netns::host_ip(tag);
    let board_ip = host_ip.trim_end_matches(".1").to_owned() + ".2";
    let ok = Command::new("ip")
        .args(["-n", &ns.name, "link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "lo up");
    Some((ns, host_ip, board_ip))
}

/// A gateway bound to `lan` on a host whose only way out is a LAN: the setup code it issues
/// names the host's LAN address (another board cannot use `127.0.0.1`).
#[test]
fn a_setup_code_from_a_lan_gateway_names_its_lan_address() {
    use std::io::{BufRead, BufReader};
    let Some((ns, host_ip, board_ip)) = board_namespace((std::process::id() + 1) % 60000) else {
        return;
    };
    let ok = Command::new("ip")
        .args(["-n", &ns.name, "route", "add", "default", "via", &host_ip])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "default route");
    let state = tmp("lan-gw");
    let mut gw = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, BIN, "run", "--bind", "lan", "--port", "0",
        ])
        .args(["--token", TOKEN, "--state-dir"])
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway in the namespace");
    let mut line = String::new();
    let stdout = gw.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let op = tmp("lan-op");
    let o = cli(
        Some(&ns.name),
        &[
            "devices",
            "setup-code",
            "--url",
            &format!("ws://127.0.0.1:{port}"),
            "--token",
            TOKEN,
            "--state-dir",
            op.to_str().expect("utf8"),
            "--json",
        ],
    );
    let _ = gw.kill();
    let _ = gw.wait();
    assert!(o.status.success(), "setup-code failed: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["url"],
        format!("ws://{board_ip}:{port}"),
        "the code must name the LAN address: {v}"
    );
    for d in [&state, &op] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A gateway bound to one address that is not loopback also listens on 127.0.0.1 at the same
/// port (as the reference does), so the board's own CLI reaches it without `--url`.
#[test]
fn a_gateway_bound_to_one_address_listens_on_loopback_beside_it() {
    let Some((ns, _, board_ip)) = board_namespace((std::process::id() + 2) % 60000) else {
        return;
    };
    let mut in_ns = Command::new("ip");
    in_ns.args(["netns", "exec", &ns.name, BIN]);
    let state = tmp("one-address-gw");
    let gw = Gateway::start_command(in_ns, &state, TOKEN, &["--bind", &board_ip]);
    assert_eq!(gw.listening, format!("ws://{board_ip}:{}", gw.port));
    let op = tmp("one-address-op");
    let health = |url: &str| {
        cli(
            Some(&ns.name),
            &[
                "call",
                "health",
                "--url",
                url,
                "--token",
                TOKEN,
                "--state-dir",
                op.to_str().expect("utf8"),
            ],
        )
    };
    // On the address itself the board's CLI is a remote device: it is answered (asked to pair).
    let o = health(&format!("ws://{board_ip}:{}", gw.port));
    assert!(text(&o).contains("pairing required"), "{}", text(&o));
    // On loopback beside it, the same CLI is local: paired silently and served.
    let o = health(&format!("ws://127.0.0.1:{}", gw.port));
    assert!(o.status.success(), "health on loopback: {}", text(&o));
    drop(gw);
    for d in [&state, &op] {
        let _ = std::fs::remove_dir_all(d);
    }
}
