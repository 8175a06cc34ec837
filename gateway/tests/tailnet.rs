//! pincer-gateway on a real tailnet (headscale + tailscaled in namespaces of our own,
//! `tests/support/tailnet.rs`): `--bind tailnet` listens on the host's tailnet address,
//! answers there from another tailnet host, and refuses the same port on the LAN address.

#[path = "../../tests/support/tailnet.rs"]
mod tailnet;

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{BIN, TOKEN};

#[test]
fn a_gateway_bound_to_the_tailnet_answers_there_and_not_on_the_lan() {
    let Some(mut net) = tailnet::Tailnet::start(std::process::id() + 3) else {
        return;
    };
    let pi = net.host("pi");
    let laptop = net.host("laptop");
    net.wait_path(&laptop, &pi);

    let state = net.dir.join("gw");
    let mut gw = pi
        .command(BIN)
        .args(["run", "--bind", "tailnet", "--port", "0", "--token", TOKEN])
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway on pi");
    let mut line = String::new();
    BufReader::new(gw.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    assert!(
        line.contains(&format!("ws://{}:", pi.tailnet_ip)),
        "not on pi's tailnet address {}: {line:?}",
        pi.tailnet_ip
    );
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));

    // From the laptop over the tailnet: the gateway answers (a new remote device is asked to
    // pair, as on any non-local address).
    let out = laptop
        .command(BIN)
        .args(["call", "health", "--token", TOKEN, "--url"])
        .arg(format!("ws://{}:{port}", pi.tailnet_ip))
        .arg("--state-dir")
        .arg(net.dir.join("laptop-cli"))
        .output()
        .expect("call from the laptop");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pairing required"), "{text}");
    // The same port on pi's LAN address: nothing listens.
    assert!(tailnet::reachable_from(
        &laptop.ns,
        &format!("{}:{port}", pi.tailnet_ip)
    ));
    assert!(!tailnet::reachable_from(
        &laptop.ns,
        &format!("{}:{port}", pi.lan_ip)
    ));

    let _ = gw.kill();
    let _ = gw.wait();
}
