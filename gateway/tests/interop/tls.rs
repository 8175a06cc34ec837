//! The real OpenClaw CLI against pincer-gateway over `wss://` (`[tls]`, a generated
//! certificate), pinned the way OpenClaw pins: `gateway.remote.tlsFingerprint`.

use crate::support::openclaw::{json_of, reference, show, TOKEN};
use crate::support::Gateway;

/// Writes the CLI's remote config: `url`, the token, and `pin` as the fingerprint.
fn remote(home: &std::path::Path, url: &str, pin: &str) {
    let config = serde_json::json!({ "gateway": { "mode": "remote", "remote": {
        "url": url, "token": TOKEN, "tlsFingerprint": pin } } });
    std::fs::write(home.join("openclaw.json"), config.to_string()).expect("config");
}

#[test]
fn openclaw_cli_calls_over_wss_with_the_pinned_fingerprint_and_refuses_a_wrong_one() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let dir = std::env::temp_dir().join(format!("pincer-oc-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "[tls]\nenabled = true\n").expect("gateway.toml");
    let gw = Gateway::start_in(
        &dir.join("state"),
        TOKEN,
        &["--config", config.to_str().expect("utf-8 path")],
    );
    // The pin, as the gateway logs it and `status` gives it (its loader reads the pair back).
    let on = pincer_gateway::tls::TlsConfig {
        enabled: true,
        ..Default::default()
    };
    let pin = pincer_gateway::tls::Tls::load(&on, &dir.join("state"))
        .expect("the generated pair")
        .fingerprint()
        .to_owned();
    let url = format!("wss://127.0.0.1:{}", gw.port);
    let home = dir.join("openclaw-home");
    std::fs::create_dir_all(&home).expect("mkdir");

    remote(&home, &url, &format!("sha256:{pin}"));
    let health = json_of(&r.run(&home, &["gateway", "call", "health", "--json"]));
    assert_eq!(health["ok"], true, "{health}");
    let status = json_of(&r.run(&home, &["gateway", "call", "status", "--json"]));
    assert_eq!(
        status["gateway"]["tls"]["fingerprintSha256"],
        pin.as_str(),
        "{status}"
    );

    // A wrong pin: the CLI refuses the certificate and gets nothing.
    remote(&home, &url, &"ab".repeat(32));
    let refused = r.run(&home, &["gateway", "call", "health", "--json"]);
    assert!(!refused.status.success(), "{}", show(&refused));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
