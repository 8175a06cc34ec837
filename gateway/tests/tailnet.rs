//! pincer-gateway on a real tailnet (headscale + tailscaled in namespaces of our own,
//! `tests/support/tailnet.rs`), three hosts: "pi" runs the gateway with `bind = "tailnet"`,
//! "garden" a pincer-node, "laptop" the operator's CLI (ours and the real OpenClaw one).
//!
//! * The gateway started before `tailscaled` listens on loopback, says why in `status`, and
//!   adds the tailnet address once the daemon is up.
//! * Over the tailnet it answers (a new remote device is asked to pair; approved, the real
//!   OpenClaw CLI calls `health`); the same port on the LAN address refuses the connection.
//! * A node pairs with a setup code over the tailnet and answers an invoke; its `tailscaled`
//!   killed and restarted, the node comes back by itself.
//! * [`board_tailnet_for_the_image_test`]: the tailnet and gateway that `images/test.sh`
//!   boots the SD image against (the board joins with `tailscale_authkey` at first boot).

#[path = "../../tests/support/tailnet.rs"]
mod tailnet;

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;
use support::openclaw::{self, Proc};
use support::{Gateway, BIN, TOKEN};
use tailnet::wait_for;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

/// `pincer-gateway ARGS --token … --state-dir …` on `host` against the gateway at `url`.
fn op(host: &tailnet::Host, state: &Path, url: &str, args: &[&str]) -> Output {
    host.command(BIN)
        .args(args)
        .args(["--url", url, "--token", TOKEN, "--state-dir"])
        .arg(state)
        .env("RUST_LOG", "warn")
        .output()
        .expect("pincer-gateway CLI")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

#[test]
fn a_tailnet_gateway_serves_its_tailnet_and_survives_daemons_restarting() {
    let _one = support::one_at_a_time();
    let Some(mut net) = tailnet::Tailnet::start(std::process::id() + 3) else {
        return;
    };
    let mut pi = net.host("pi");
    let mut garden = net.host("garden");
    let laptop = net.host("laptop");

    // Boards boot in any order: the gateway comes up before pi's tailscaled.
    pi.kill_daemon();
    // Ticks every second: a node whose path died notices within two.
    let gw = tailnet_gateway(&net, &pi, "[limits]\ntick_interval_ms = 1000\n");
    let port = gw.port;
    assert!(
        gw.listening.starts_with("ws://127.0.0.1:"),
        "no tailnet yet, so loopback first: {}",
        gw.listening
    );
    let local = format!("ws://127.0.0.1:{port}");
    let pi_state = net.dir.join("pi-cli");
    let status = json(&op(&pi, &pi_state, &local, &["call", "status"]));
    let t = &status["gateway"]["tailnet"];
    assert!(t["listening"].is_null(), "{status}");
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("tailscaled is not running")),
        "status says why: {status}"
    );

    net.start_daemon(&mut pi);
    let tailnet_url = format!("ws://{}:{port}", pi.tailnet_ip);
    wait_for("the gateway on its tailnet address", 60, || {
        let s = json(&op(&pi, &pi_state, &local, &["call", "status"]));
        (s["gateway"]["tailnet"]["listening"] == format!("{}:{port}", pi.tailnet_ip)).then_some(())
    });
    // What the daemon says is looked at now and then: wait for it.
    let status = wait_for("status with the daemon running", 60, || {
        let s = json(&op(&pi, &pi_state, &local, &["call", "status"]));
        (s["gateway"]["tailnet"]["daemon"]["running"] == true).then_some(s)
    });
    let daemon = &status["gateway"]["tailnet"]["daemon"];
    assert_eq!(daemon["tun"], true, "{status}");
    assert!(
        daemon["login"]
            .as_str()
            .is_some_and(|l| l.starts_with("pincer")),
        "{status}"
    );
    net.wait_path(&laptop, &pi);

    // The tailnet address takes the port (once the laptop's path carries TCP: a restarted
    // daemon's routes settle in their own time); the LAN address refuses it.
    wait_for("the gateway reachable over the tailnet", 60, || {
        tailnet::reachable_from(&laptop.ns, &format!("{}:{port}", pi.tailnet_ip)).then_some(())
    });
    assert!(!tailnet::reachable_from(
        &laptop.ns,
        &format!("{}:{port}", pi.lan_ip)
    ));

    // The operator on the laptop: a stranger first, approved on the board, then served.
    let laptop_state = net.dir.join("laptop-cli");
    let first = op(&laptop, &laptop_state, &tailnet_url, &["call", "health"]);
    assert!(
        text(&first).contains("pairing required"),
        "{}",
        text(&first)
    );
    approve_all(&pi, &pi_state, &local);
    let health = json(&op(
        &laptop,
        &laptop_state,
        &tailnet_url,
        &["call", "health"],
    ));
    assert_eq!(health["ok"], true, "{health}");

    // The real OpenClaw CLI from the laptop, over the tailnet, paired the same way.
    if let Some(r) = openclaw::reference() {
        let home = net.dir.join("laptop-openclaw");
        let args = [
            "gateway",
            "call",
            "health",
            "--json",
            "--url",
            &tailnet_url,
            "--token",
            TOKEN,
        ];
        let o = r.run_in(Some(&laptop.ns), &home, &args);
        if !o.status.success() {
            assert!(
                text(&o).contains("pairing required"),
                "{}",
                openclaw::show(&o)
            );
            approve_all(&pi, &pi_state, &local);
        }
        let o = r.run_in(Some(&laptop.ns), &home, &args);
        let v = openclaw::json_of(&o);
        assert_eq!(v["ok"], true, "{v}");
    }

    // A node in the garden pairs with a setup code over the tailnet.
    let code = json(&op(
        &pi,
        &pi_state,
        &local,
        &["devices", "setup-code", "--json"],
    ));
    assert_eq!(
        code["url"], tailnet_url,
        "the code names the tailnet address: {code}"
    );
    let node_state = net.dir.join("garden-node");
    let _node = Proc(
        garden
            .command(support::node_bin::pincer_node_bin())
            .args([
                "run",
                "--caps",
                "system",
                "--name",
                "garden",
                "--setup-code",
            ])
            .arg(code["setupCode"].as_str().expect("setupCode"))
            .arg("--state-dir")
            .arg(&node_state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(net.dir.join("garden-node.log")).expect("log"))
            .spawn()
            .expect("pincer-node"),
    );
    let connected_at = |pi: &tailnet::Host| -> Option<u64> {
        let v = json(&op(pi, &pi_state, &local, &["nodes", "list", "--json"]));
        v["nodes"].as_array()?.iter().find_map(|n| {
            (n["displayName"] == "garden" && n["connected"] == true)
                .then(|| n["connectedAtMs"].as_u64().unwrap_or(1))
        })
    };
    let first_at = wait_for("the garden node listed as connected", 60, || {
        connected_at(&pi)
    });
    approve_surfaces(&pi, &pi_state, &local);
    let which = |pi: &tailnet::Host| {
        op(
            pi,
            &pi_state,
            &local,
            &[
                "nodes",
                "invoke",
                "garden",
                "system.which",
                "--params",
                r#"{"bins":["sh"]}"#,
            ],
        )
    };
    let o = which(&pi);
    assert!(
        o.status.success() && text(&o).contains("/sh"),
        "{}",
        text(&o)
    );

    // `pincer-node doctor` on the garden board tells the tailnet and the gateway over it.
    let o = garden
        .command(support::node_bin::pincer_node_bin())
        .args(["doctor", "--gateway", &tailnet_url, "--state-dir"])
        .arg(&node_state)
        .env("PINCER_TAILSCALE_SOCKET", &garden.socket)
        .env("RUST_LOG", "warn")
        .output()
        .expect("pincer-node doctor");
    let report = text(&o);
    let line = |area: &str| {
        report
            .lines()
            .find(|l| l.starts_with(area))
            .unwrap_or_else(|| panic!("no {area} line: {report}"))
            .to_owned()
    };
    let tl = line("tailnet");
    assert!(
        tl.contains("ok  up: ") && tl.contains(&garden.tailnet_ip) && tl.contains("login pincer"),
        "{report}"
    );
    assert!(tl.contains("is a tailnet address"), "{report}");
    assert!(line("gateway").contains("ok  "), "{report}");

    // The node's tailscaled dies and comes back: the node reconnects by itself.
    garden.kill_daemon();
    // Its path is gone: the node's link notices the missing ticks and retries.
    wait_for("the node to notice its link gone", 60, || {
        std::fs::read_to_string(net.dir.join("garden-node.log"))
            .is_ok_and(|l| l.contains("tick timeout"))
            .then_some(())
    });
    // The gateway's side gives the silent socket up too (its ticks go unacknowledged):
    // the node is shown gone, not connected for a quarter of an hour.
    wait_for("the gateway to show the garden node gone", 60, || {
        (connected_at(&pi).is_none()).then_some(())
    });
    net.start_daemon(&mut garden);
    wait_for("the garden node back", 120, || {
        connected_at(&pi).filter(|at| *at != first_at)
    });
    let o = which(&pi);
    assert!(
        o.status.success() && text(&o).contains("/sh"),
        "{}",
        text(&o)
    );
    drop(gw);
    net.assert_host_dns_untouched();
}

/// pincer-gateway `--bind tailnet` on `pi`, asking `pi`'s daemon; `config` is more of its
/// gateway.toml.
fn tailnet_gateway(net: &tailnet::Tailnet, pi: &tailnet::Host, config: &str) -> Gateway {
    let cfg = net.dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "{config}[tailscale]\nsocket = \"{}\"\n",
            pi.socket.display()
        ),
    )
    .expect("gateway.toml");
    Gateway::start_command(
        pi.command(BIN),
        &net.dir.join("gw"),
        TOKEN,
        &["--bind", "tailnet", "--config", cfg.to_str().expect("utf8")],
    )
}

/// Approves every pending device request on the board's gateway.
fn approve_all(pi: &tailnet::Host, state: &Path, url: &str) {
    let v = json(&op(pi, state, url, &["devices", "list", "--json"]));
    let ids: Vec<String> = v["pending"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["requestId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(!ids.is_empty(), "nothing pending: {v}");
    for id in ids {
        let o = op(pi, state, url, &["devices", "approve", &id]);
        assert!(o.status.success(), "approve {id}: {}", text(&o));
    }
}

/// Approves the command surfaces nodes asked for (a node paired by setup code still has its
/// commands approved by an operator).
fn approve_surfaces(pi: &tailnet::Host, state: &Path, url: &str) {
    let v = json(&op(pi, state, url, &["nodes", "pending", "--json"]));
    let Some(list) = v["pending"].as_array().or_else(|| v.as_array()) else {
        return;
    };
    for p in list {
        if let Some(id) = p["requestId"].as_str() {
            let o = op(pi, state, url, &["nodes", "approve", id]);
            assert!(o.status.success(), "approve surface {id}: {}", text(&o));
        }
    }
}

/// The environment a probe run of this binary reads (see [`serve_header_probe`]).
const PROBE_URL: &str = "PINCER_TAILNET_PROBE_URL";
const PROBE_HEADERS: &str = "PINCER_TAILNET_PROBE_HEADERS";
const PROBE_TOKEN: &str = "PINCER_TAILNET_PROBE_TOKEN";

/// Not a test of its own: the test binary run again inside a namespace (`ip netns exec`)
/// sends one device-less operator `connect` to `PINCER_TAILNET_PROBE_URL` with the upgrade
/// headers in `PINCER_TAILNET_PROBE_HEADERS` and prints the response — a local process on the
/// board writing Tailscale's headers itself.
#[test]
#[ignore = "a helper run by serve_signs_in_tailnet_logins_and_refuses_forged_headers"]
fn serve_header_probe() {
    let Ok(url) = std::env::var(PROBE_URL) else {
        return;
    };
    let headers: Vec<(String, String)> =
        serde_json::from_str(&std::env::var(PROBE_HEADERS).unwrap_or("[]".into()))
            .expect("probe headers");
    let token = std::env::var(PROBE_TOKEN).ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt.block_on(async {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut c = support::Client::open_with_headers(&url, &h).await;
        let nonce = c.challenge().await;
        let params = support::Connect {
            token,
            client_id: "cli",
            mode: "cli",
            ..Default::default()
        }
        .params(&nonce);
        c.connect(params).await
    });
    println!("PROBE-RESULT {res}");
}

/// Runs [`serve_header_probe`] inside `host`: the `connect` response.
fn probe(host: &tailnet::Host, url: &str, headers: &[(&str, &str)], token: Option<&str>) -> Value {
    let exe = std::env::current_exe().expect("test binary");
    let mut c = host.command(exe);
    c.args(["--exact", "serve_header_probe", "--ignored", "--nocapture"])
        .env(PROBE_URL, url)
        .env(PROBE_HEADERS, serde_json::to_string(headers).expect("json"));
    if let Some(t) = token {
        c.env(PROBE_TOKEN, t);
    }
    let o = c.output().expect("probe");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("PROBE-RESULT "))
        .unwrap_or_else(|| panic!("probe printed no result: {}", text(&o)));
    serde_json::from_str(line).expect("probe JSON")
}

#[test]
fn serve_signs_in_tailnet_logins_and_refuses_forged_headers() {
    let _one = support::one_at_a_time();
    let Some(mut net) = tailnet::Tailnet::start(std::process::id() + 7) else {
        return;
    };
    let pi = net.host("pi");
    let laptop = net.host("laptop");

    // The gateway stays on loopback; Tailscale Serve (plain HTTP: headscale has no HTTPS
    // certificates) forwards the tailnet's port 80 to the gateway's own Serve listener.
    let cfg = net.dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tailscale]\nserve = true\nserve_https = false\nsocket = \"{}\"\ncli = \"{}\"\n",
            pi.socket.display(),
            net.tailscale_cli().display()
        ),
    )
    .expect("gateway.toml");
    let gw = Gateway::start_command(
        pi.command(BIN),
        &net.dir.join("gw"),
        TOKEN,
        &[
            "--bind",
            "loopback",
            "--config",
            cfg.to_str().expect("utf8"),
        ],
    );
    let local = format!("ws://127.0.0.1:{}", gw.port);
    let pi_state = net.dir.join("pi-cli");
    let serve = wait_for("the Serve route", 60, || {
        let s = json(&op(&pi, &pi_state, &local, &["call", "status"]));
        let serve = s["gateway"]["tailnet"]["serve"].clone();
        serve["url"].is_string().then_some(serve)
    });
    let listener = serve["listener"].as_str().expect("listener").to_owned();
    assert!(listener.starts_with("127.0.0.1:"), "{serve}");
    net.wait_path(&laptop, &pi);
    // Serve answers for the board's MagicDNS name (as the status URL says), not its address.
    let url = serve["url"].as_str().unwrap_or_default();
    let name = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    assert!(name.starts_with("pi."), "{serve}");
    laptop.resolve(&name, &pi.tailnet_ip);
    let served = format!("ws://{name}");

    // The real OpenClaw CLI on the laptop, configured for the remote gateway with no token
    // at all (`gateway.auth.allowTailscale`): a new device pairs like any remote one, then
    // calls health as its tailnet login.
    if let Some(r) = openclaw::reference() {
        let home = net.dir.join("laptop-openclaw");
        let run = |args: &[&str]| r.run_in(Some(&laptop.ns), &home, args);
        for args in [
            ["config", "set", "gateway.mode", "remote"],
            ["config", "set", "gateway.remote.url", &served],
            // The CLI opens a socket without a token only when told the gateway signs
            // tailnet logins in.
            ["config", "set", "gateway.auth.allowTailscale", "true"],
        ] {
            let o = run(&args);
            assert!(o.status.success(), "{}", openclaw::show(&o));
        }
        let health = ["gateway", "call", "health", "--json"];
        // `gateway call` only reads the CLI's state; a command that acts makes its device
        // identity, and that new device pairs first.
        let o = run(&[
            "system",
            "event",
            "--text",
            "hello from the laptop",
            "--json",
        ]);
        assert!(
            !o.status.success(),
            "a new device pairs first: {}",
            openclaw::show(&o)
        );
        assert!(
            text(&o).contains("pairing required"),
            "{}",
            openclaw::show(&o)
        );
        approve_all(&pi, &pi_state, &local);
        let v = openclaw::json_of(&run(&health));
        assert_eq!(v["ok"], true, "{v}");
    }

    // A local process on the board writing Serve's headers itself. To the Serve listener:
    // a login whois does not confirm for the claimed address, or an address the tailnet does
    // not have.
    let serve_url = format!("ws://{listener}");
    let refused = |v: &Value, code: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["details"]["code"], code, "{v}");
    };
    let headers = |xff: &str, login: &str| {
        vec![
            ("x-forwarded-for", xff.to_owned()),
            ("x-forwarded-proto", "http".to_owned()),
            ("x-forwarded-host", pi.tailnet_ip.clone()),
            ("tailscale-user-login", login.to_owned()),
        ]
    };
    let send = |url: &str, h: Vec<(&'static str, String)>, token: Option<&str>| {
        let r: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        probe(&pi, url, &r, token)
    };
    let laptop_ip = laptop.tailnet_ip.clone();
    refused(
        &send(&serve_url, headers(&laptop_ip, "mallory@"), None),
        "AUTH_TAILSCALE_IDENTITY_MISMATCH",
    );
    refused(
        &send(&serve_url, headers("100.64.9.9", "pincer@"), None),
        "AUTH_TAILSCALE_WHOIS_FAILED",
    );
    // Through Serve with no login (a tagged node): nobody to sign in as.
    let mut no_login = headers(&laptop_ip, "");
    no_login.retain(|(k, _)| *k != "tailscale-user-login");
    refused(
        &send(&serve_url, no_login, None),
        "AUTH_TAILSCALE_IDENTITY_MISSING",
    );
    // Headers that prove nothing do not stop a client that brings the shared token.
    let v = send(&serve_url, headers(&laptop_ip, "mallory@"), Some(TOKEN));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["payload"]["auth"]["method"], "token", "{v}");
    // Tailscale's headers on the ordinary port are refused even with the right token.
    refused(
        &send(&local, headers(&laptop_ip, "pincer@"), Some(TOKEN)),
        "AUTH_TAILSCALE_PROXY_MISSING",
    );
    // The laptop's own login for its own address would pass whois today...
    let login = wait_for("the laptop's login", 30, || {
        let o = net.cli(&pi, &["whois", "--json", &laptop_ip]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["UserProfile"]["LoginName"].as_str().map(str::to_owned)
    });
    // ...until the laptop is deleted from the tailnet: then whois fails, and the laptop's
    // CLI no longer gets in.
    net.delete_node("laptop");
    wait_for("whois to forget the laptop", 60, || {
        let v = send(&serve_url, headers(&laptop_ip, &login), None);
        (v["error"]["details"]["code"] == "AUTH_TAILSCALE_WHOIS_FAILED").then_some(())
    });
    if let Some(r) = openclaw::reference() {
        let home = net.dir.join("laptop-openclaw");
        let o = r.run_in(
            Some(&laptop.ns),
            &home,
            &["gateway", "call", "health", "--json"],
        );
        assert!(
            !o.status.success(),
            "a deleted device got in: {}",
            openclaw::show(&o)
        );
    }
    drop(gw);
    net.assert_host_dns_untouched();
}

/// Not a test of its own: run by `images/test.sh` (`PINCER_BOARD_TAILNET=<dir>`), the tailnet
/// its emulated board joins at first boot. Starts headscale on a bridge of our own (the guest
/// reaches it through qemu's user-mode network, which connects from this host) and "pi" with
/// pincer-gateway `bind = "tailnet"`, writes `<dir>/board.env` (`LOGIN_SERVER`, `AUTHKEY`,
/// `GATEWAY` — the gateway's tailnet URL —, `SETUP_CODE`) for the card's pincer.toml, and
/// `<dir>/joined` once the board is a node of the tailnet and its pincer-node is connected to
/// the gateway from its tailnet address and answers `system.which`. Then, once the test has
/// cut the power and booted the card again (`<dir>/rebooted`), it returns when the node is
/// back over the tailnet (a new connection from the same address; the key is long gone).
/// Last, it deletes the board from the control server (`<dir>/deleted`): once the test has
/// given the card the key again and booted it (`<dir>/rekeyed`), it returns when the board
/// has joined anew and its node is back over the tailnet.
/// Waits at most `PINCER_BOARD_DEADLINE` seconds (default 900) for each.
#[test]
#[ignore = "a helper run by images/test.sh"]
fn board_tailnet_for_the_image_test() {
    let dir = PathBuf::from(
        std::env::var_os("PINCER_BOARD_TAILNET")
            .expect("a helper of images/test.sh: PINCER_BOARD_TAILNET=<dir>"),
    );
    let secs: u64 = std::env::var("PINCER_BOARD_DEADLINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    let hostname = std::env::var("PINCER_BOARD_HOSTNAME").unwrap_or("pincer-tailnet".into());
    let name = std::env::var("PINCER_BOARD_NODE").unwrap_or("pincer-tailnet-board".into());
    let mut net = tailnet::Tailnet::start(std::process::id() + 11).expect("a tailnet");
    let pi = net.host("pi");
    let gw = tailnet_gateway(&net, &pi, "");
    let local = format!("ws://127.0.0.1:{}", gw.port);
    let tailnet_url = format!("ws://{}:{}", pi.tailnet_ip, gw.port);
    let state = net.dir.join("pi-cli");
    wait_for("the gateway on its tailnet address", 60, || {
        let s = json(&op(&pi, &state, &local, &["call", "status"]));
        (s["gateway"]["tailnet"]["listening"] == format!("{}:{}", pi.tailnet_ip, gw.port))
            .then_some(())
    });
    let code = json(&op(
        &pi,
        &state,
        &local,
        &[
            "devices",
            "setup-code",
            "--role",
            "node",
            "--ttl",
            "2h",
            "--json",
        ],
    ));
    assert_eq!(code["url"], tailnet_url, "{code}");
    let env = format!(
        "LOGIN_SERVER={}\nAUTHKEY={}\nGATEWAY={tailnet_url}\nSETUP_CODE={}\n",
        net.login_server,
        net.auth_key(),
        code["shortCode"].as_str().expect("shortCode"),
    );
    std::fs::write(dir.join("board.env.tmp"), env).expect("board.env");
    std::fs::rename(dir.join("board.env.tmp"), dir.join("board.env")).expect("board.env");
    eprintln!(
        "board tailnet: control server {}, gateway {tailnet_url}",
        net.login_server
    );

    // The board on the tailnet: headscale lists it online, with its address.
    let board_ip = wait_for("the board online in the tailnet", secs, || {
        net.online_address(&hostname)
    });
    eprintln!("board tailnet: the board joined as {hostname}, {board_ip}");
    // Its node on the gateway, from that address (the gateway listens on its tailnet address
    // and loopback only: there is no other way in).
    let connected = || -> Option<(Value, Value, Value)> {
        let v = json(&op(&pi, &state, &local, &["nodes", "list", "--json"]));
        v["nodes"].as_array()?.iter().find_map(|n| {
            (n["displayName"] == name.as_str() && n["connected"] == true).then(|| {
                (
                    n["nodeId"].clone(),
                    n["remoteIp"].clone(),
                    n["connectedAtMs"].clone(),
                )
            })
        })
    };
    let node = wait_for("the board's node connected to the gateway", secs, connected);
    assert_eq!(
        node.1, board_ip,
        "the node came from the board's tailnet address"
    );
    let o = wait_for("system.which on the board", 120, || {
        // (the node asks for its command surface once connected: approved when it has)
        approve_surfaces(&pi, &state, &local);
        let o = op(
            &pi,
            &state,
            &local,
            &[
                "nodes",
                "invoke",
                &name,
                "system.which",
                "--params",
                r#"{"bins":["sh"]}"#,
            ],
        );
        o.status.success().then_some(o)
    });
    assert!(text(&o).contains("/sh"), "{}", text(&o));
    let joined = format!(
        "{hostname} joined as {board_ip}; node {} connected from it to {tailnet_url}, system.which answered",
        node.0
    );
    std::fs::write(dir.join("joined"), format!("{joined}\n")).expect("joined");
    println!("BOARD-TAILNET ok: {joined}");

    // The power cut and the second boot: back over the tailnet by itself.
    wait_for("the image test to boot the card again", secs, || {
        dir.join("rebooted").exists().then_some(())
    });
    let again = wait_for("the board's node back after the second boot", secs, || {
        connected().filter(|n| n.2 != node.2)
    });
    assert_eq!(again.0, node.0, "the same device");
    assert_eq!(again.1, board_ip, "over the tailnet again");
    println!("BOARD-TAILNET ok: second boot: node back from {board_ip} without a key");

    // Removed from the tailnet, then given a key again: it joins anew.
    net.delete_node(&hostname);
    std::fs::write(dir.join("deleted"), "").expect("deleted");
    wait_for("the image test to give the card a key again", secs, || {
        dir.join("rekeyed").exists().then_some(())
    });
    let new_ip = wait_for("the board online in the tailnet again", secs, || {
        net.online_address(&hostname)
    });
    let third = wait_for("the board's node back after joining anew", secs, || {
        connected().filter(|n| n.2 != again.2 && n.1 == new_ip.as_str())
    });
    assert_eq!(third.0, node.0, "the same device");
    println!(
        "BOARD-TAILNET ok: removed from the tailnet and given a key again: joined as {new_ip}, node back from it"
    );
    drop(gw);
    net.assert_host_dns_untouched();
}
