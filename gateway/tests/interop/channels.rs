//! The real OpenClaw CLI reads pincer-gateway's channels: `openclaw channels status` (and
//! `--probe`) shows the Telegram bot as the reference shows its own, against the fake Bot API
//! (`tests/support/fake_telegram.rs`).

use crate::fake_telegram::{FakeTelegram, BOT_USERNAME};
use crate::support::openclaw::{reference, show, TOKEN};
use crate::support::Gateway;

#[test]
fn openclaw_channels_status_shows_the_telegram_bot() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tg = rt.block_on(FakeTelegram::start());
    let dir = std::env::temp_dir().join(format!("pincer-interop-channels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, tg.gateway_toml("")).expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    let gw = Gateway::start_in(&dir.join("state"), TOKEN, &["--config", &cfg]);
    rt.block_on(tg.wait_for(std::time::Duration::from_secs(30), |c| {
        c.iter().any(|c| c.method == "getUpdates")
    }));
    let home = dir.join("openclaw-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let config = serde_json::json!({ "gateway": { "mode": "remote", "remote": { "url": gw.url(), "token": TOKEN } } });
    std::fs::write(home.join("openclaw.json"), config.to_string()).expect("config");

    // The reference prints its own bot as:
    // "- Telegram default: enabled, configured, running, connected, transport:just now, mode:polling, token:***"
    let out = r.run(&home, &["channels", "status"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Telegram default: enabled, configured, running, connected")
            && text.contains("mode:polling"),
        "{}",
        show(&out)
    );
    let out = r.run(&home, &["channels", "status", "--probe"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("bot:@{BOT_USERNAME}")) && text.contains("works"),
        "{}",
        show(&out)
    );
    assert!(!text.contains(crate::fake_telegram::TOKEN));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
