//! The real OpenClaw CLI against pincer-gateway (reference "Minimum for interop" B, §2.8):
//! `gateway health`, `gateway call status` and `gateway probe` succeed and show
//! pincer-gateway's data; `status` and `health` find it through the config file.

use crate::support::openclaw::{json_of, reference, show, TOKEN};
use crate::support::Gateway;

#[test]
fn openclaw_cli_reads_health_status_and_probe() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let gw = Gateway::start_with_token(TOKEN, &[]);
    let url = gw.url();
    let home = gw.dir.join("openclaw-home");
    std::fs::create_dir_all(&home).expect("mkdir");

    let health = json_of(&r.cli(&home, &url, &["gateway", "health", "--json"]));
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(
        health["gateway"]["implementation"], "pincer-gateway",
        "{health}"
    );

    let status = json_of(&r.cli(&home, &url, &["gateway", "call", "status", "--json"]));
    assert!(
        status["runtimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("pincer-gateway")),
        "{status}"
    );

    let probe = json_of(&r.cli(&home, &url, &["gateway", "probe", "--json"]));
    assert_eq!(probe["ok"], true, "{probe}");
    let target = probe["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "explicit"))
        .unwrap_or_else(|| panic!("no explicit target: {probe}"));
    assert_eq!(target["connect"]["ok"], true, "{target}");
    // pincer-gateway keeps a loopback CLI's scopes, so the probe's read calls succeed too.
    assert_eq!(
        target["connect"]["rpcOk"], true,
        "capability {}: {target}",
        target["auth"]["capability"]
    );
    assert_eq!(target["server"]["version"], pincer_gateway::VERSION);

    // `openclaw status` and `openclaw health` take the gateway from the config file.
    let config = serde_json::json!({ "gateway": { "mode": "remote", "remote": { "url": url, "token": TOKEN } } });
    std::fs::write(home.join("openclaw.json"), config.to_string()).expect("config");
    let status = r.run(&home, &["status"]);
    assert!(status.status.success(), "{}", show(&status));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("reachable") && text.contains(&format!("app {}", pincer_gateway::VERSION)),
        "{}",
        show(&status)
    );
    let health = r.run(&home, &["health"]);
    assert!(health.status.success(), "{}", show(&health));

    let human = r.cli(&home, &url, &["gateway", "probe"]);
    assert!(human.status.success(), "{}", show(&human));
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("Reachable: yes"),
        "{}",
        show(&human)
    );
}
