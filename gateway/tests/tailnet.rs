//! pincer-gateway on a real tailnet (headscale + tailscaled in namespaces of our own,
//! `tests/support/tailnet.rs`): `--bind tailnet` listens on the host's tailnet address,
//! answers there from another tailnet host, and refuses the same port on the LAN address.

#[path = "../../tests/support/tailnet.rs"]
mod tailnet;

mod support;

use support::{Gateway, BIN, TOKEN};

#[test]
fn a_gateway_bound_to_the_tailnet_answers_there_and_not_on_the_lan() {
    let Some(mut net) = tailnet::Tailnet::start(std::process::id() + 3) else {
        return;
    };
    let pi = net.host("pi");
    let laptop = net.host("laptop");
    net.wait_path(&laptop, &pi);

    let gw = Gateway::start_command(
        pi.command(BIN),
        &net.dir.join("gw"),
        TOKEN,
        &["--bind", "tailnet"],
    );
    assert!(
        gw.listening
            .starts_with(&format!("ws://{}:", pi.tailnet_ip)),
        "not on pi's tailnet address {}: {}",
        pi.tailnet_ip,
        gw.listening
    );
    let port = gw.port;

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

    drop(gw);
}
