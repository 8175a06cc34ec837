//! The `pincer-gateway call` CLI (the operator client, the wire's other end in this repo):
//! results printed as JSON that matches the method result schemas (§4.4 Shapes of the
//! important methods), params passed through, errors on stderr with a non-zero exit.

use std::process::{Command, Output};

use serde_json::Value;

use crate::schemas::Validators;
use crate::support::*;

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("PINCER_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("CLAWDBOT_GATEWAY_TOKEN")
        .output()
        .expect("run pincer-gateway")
}

#[test]
fn call_prints_the_result_payload_and_fails_with_the_error() {
    let gw = Gateway::start(&[]);
    let url = gw.url();
    let state = std::env::temp_dir().join(format!("pincer-conf-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let s = state.to_str().expect("utf8");
    let base = [
        "--url",
        url.as_str(),
        "--token",
        TOKEN,
        "--state-dir",
        s,
        "--timeout-ms",
        "5000",
    ];
    let run = |method: &str, extra: &[&str]| -> Output {
        let mut a = vec!["call", method];
        a.extend_from_slice(&base);
        a.extend_from_slice(extra);
        cli(&a)
    };
    let text = |o: &Output| {
        format!(
            "status {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let schemas = Validators::load();
    for method in ["health", "status", "system-presence"] {
        let o = run(method, &["--json"]);
        assert!(o.status.success(), "{method}: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("{method}: stdout is not one JSON value ({e}): {}", text(&o))
        });
        let mut problems = Vec::new();
        schemas.check(
            &format!("methods/{method}.result.json"),
            &v,
            method,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
    // Params are passed through.
    let o = run(
        "system-event",
        &["--params", r#"{"text":"from the cli"}"#, "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run("status", &["--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        v["queuedSystemEvents"].to_string().contains("from the cli"),
        "{v}"
    );

    // Errors: non-zero exit, message on stderr, nothing on stdout.
    let o = run("no.such.method", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown method: no.such.method"),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let o = run("health", &["--params", r#"{"probe":"yes"}"#]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid health params"),
        "{}",
        text(&o)
    );
    let o = run("health", &["--params", "not json"]);
    assert!(!o.status.success(), "{}", text(&o));

    // A wrong shared token from a fresh identity: refused.
    let fresh = state.join("fresh");
    let o = cli(&[
        "call",
        "health",
        "--url",
        &url,
        "--token",
        "wrong",
        "--state-dir",
        fresh.to_str().unwrap(),
        "--timeout-ms",
        "5000",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("AUTH_TOKEN_MISMATCH") || err.contains("unauthorized"),
        "{}",
        text(&o)
    );
    // Nobody listening: non-zero, not a hang.
    drop(gw);
    let o = run("health", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&state);
}
