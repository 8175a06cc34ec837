//! The example config in `configs/` must load.
use pincer_gateway::config::{Config, FileConfig, Overrides};

#[test]
fn example_gateway_toml_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/gateway.toml");
    let file = FileConfig::load(&path).expect("configs/gateway.toml parses");
    assert_eq!(file.port, Some(18789));
    let dir = std::env::temp_dir().join(format!("pincer-example-{}", std::process::id()));
    let cfg = Config::resolve(Overrides {
        config: Some(path),
        state_dir: Some(dir.clone()),
        token: Some("t".into()),
        ..Default::default()
    })
    .expect("resolves");
    assert_eq!(cfg.limits.tick_interval_ms, 30_000);
    assert_eq!(cfg.limits.max_preauth_per_ip, 32);
    assert_eq!(cfg.limits.readonly_max_payload, 1 << 20);
    // The agent section: the default model resolves to a configured provider.
    let model = cfg.agent.model.clone().expect("[agent] model");
    let r = cfg
        .agent
        .model_ref(&model)
        .expect("its provider is configured");
    assert_eq!(r.context_tokens, 128_000);
    assert_eq!(cfg.agent.max_model_calls, 8);
    assert!(cfg.control_ui.enabled && cfg.control_ui.root.is_none());
    let _ = std::fs::remove_dir_all(dir);
}
