//! `pincer-bench camera`: `camera.snap` at 640×480 end to end (operator → pincer-gateway →
//! pincer-node → V4L2 → JPEG → operator) against the bare V4L2 capture of one frame on the same
//! device, in one run, plus the node's RSS idle, its peak across the snaps and its peak while
//! recording a 10 s `camera.clip`.
//!
//! The device is `vivid` in the qemu VM of `tests/vm/` (TCG: an emulated CPU, so absolute
//! figures are several times a real board's; the columns compare within one run).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::process::Command;

use super::{
    clip, next_text, operator_socket, send_text, start_to_hello, temp_dir, workspace_root, Kind,
    Spec, Ws, TOKEN,
};

/// Snaps timed after two warm-up ones (30: the median of 10 moved by ±4 % from run to run in
/// the TCG VM, about the margin the 1.2× target leaves).
const SNAPS: usize = 30;
/// Bare frames read (timed with /proc/uptime's 10 ms resolution, so many of them).
const BARE: usize = 40;
/// Bare 5-frame captures timed together (the same resolution argument).
const BARE5: usize = 24;

/// A request on the operator socket, waiting for its `res`.
async fn request(ws: &mut Ws, id: &str, method: &str, params: Value) -> Result<Value> {
    let frame = json!({ "type": "req", "id": id, "method": method, "params": params });
    send_text(ws, frame.to_string()).await?;
    let needle = format!(r#""id":"{id}""#);
    loop {
        let t = next_text(ws).await?;
        if t.contains(&needle) && t.contains(r#""type":"res""#) {
            let v: Value = serde_json::from_str(&t)?;
            if v["ok"] != true {
                bail!("{method} failed: {}", clip(&t, 300));
            }
            return Ok(v["payload"].clone());
        }
    }
}

/// `system.run` in the guest, returning its stdout.
async fn guest_sh(ws: &mut Ws, node: &str, n: &mut u32, script: &str) -> Result<String> {
    *n += 1;
    let v = request(
        ws,
        &format!("sh{n}"),
        "node.invoke",
        json!({ "nodeId": node, "command": "system.run", "timeoutMs": 60000,
                "params": { "command": ["sh", "-c", script] }, "idempotencyKey": format!("sh{n}") }),
    )
    .await?;
    let p = &v["payload"];
    if p["exitCode"] != 0 {
        bail!(
            "guest `{script}` exited {}: {}",
            p["exitCode"],
            p["stderr"].as_str().unwrap_or("")
        );
    }
    Ok(p["stdout"].as_str().unwrap_or("").trim().to_owned())
}

fn cli_call(gateway: &Path, url: &str, dir: &Path, args: &[&str]) -> Result<String> {
    let o = std::process::Command::new(gateway)
        .args(args)
        .args(["--url", url, "--token", TOKEN, "--state-dir"])
        .arg(dir)
        .output()?;
    if !o.status.success() {
        bail!(
            "pincer-gateway {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub async fn run(gateway: &Path, vm_node: Option<PathBuf>) -> Result<()> {
    let node = vm_node.unwrap_or_else(|| {
        workspace_root().join("target/x86_64-unknown-linux-musl/release/pincer-node")
    });
    if !node.exists() {
        bail!(
            "{} not found: CC_x86_64_unknown_linux_musl=gcc cargo build --release \
             --target x86_64-unknown-linux-musl -p pincer-node",
            node.display()
        );
    }
    let work = temp_dir("camera");
    let vm = work.join("vm");
    std::fs::create_dir_all(&vm)?;
    let policy = work.join("exec-policy.toml");
    std::fs::write(&policy, "mode = \"full\"\n")?;
    let st = std::process::Command::new("bash")
        .arg(workspace_root().join("tests/vm/build.sh"))
        .arg(&vm)
        .arg(&node)
        .arg(format!("{}:/state/node/exec-policy.toml", policy.display()))
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("tests/vm/build.sh failed");
    }
    let (server, _) = start_to_hello(&Spec {
        kind: Kind::Pincer,
        bin: gateway.to_path_buf(),
        node: None,
    })
    .await?;
    let port = server
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("no port in {}", server.url))?;
    let node_args = format!(
        "run --gateway ws://10.0.2.2:{port} --token {TOKEN} --caps camera,system \
         --name bench-board --state-dir /state/node"
    );
    // PINCER_BENCH_CONSOLE=FILE keeps the guest's console, with the HAL's debug lines (the
    // `camera.snap phases`: where a photo's time goes).
    let console = std::env::var_os("PINCER_BENCH_CONSOLE");
    let (cmdline, stdout) = match &console {
        Some(f) => (
            "pincer.novfb RUST_LOG=info,pincer_hal=debug",
            Stdio::from(std::fs::File::create(f)?),
        ),
        None => ("pincer.novfb", Stdio::null()),
    };
    let mut qemu = Command::new("bash")
        .arg(workspace_root().join("tests/vm/boot.sh"))
        .arg(&vm)
        .args(["--cmdline", cmdline, "--"])
        .args(node_args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("tests/vm/boot.sh (tests/vm/build.sh installs qemu)")?;
    let result = figures(gateway, &server.url, &work).await;
    let _ = qemu.start_kill();
    let _ = qemu.wait().await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    let table = result?;
    println!("{table}");
    Ok(())
}

async fn figures(gateway: &Path, url: &str, work: &Path) -> Result<String> {
    let mut ws = operator_socket(url).await?;
    // Approve the board's pairing and surface with the CLI, as an operator would.
    let op_dir = work.join("operator");
    let deadline = Instant::now() + Duration::from_secs(150);
    let node_id = loop {
        if Instant::now() > deadline {
            bail!("the VM's node did not connect within 150 s");
        }
        let pending: Value = serde_json::from_str(&cli_call(
            gateway,
            url,
            &op_dir,
            &["call", "device.pair.list"],
        )?)
        .unwrap_or(Value::Null);
        if let Some(req) = pending["pending"][0]["requestId"].as_str() {
            cli_call(gateway, url, &op_dir, &["devices", "approve", req])?;
        }
        let v = request(&mut ws, "nl", "node.list", json!({})).await?;
        if let Some(id) = v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["connected"] == true))
            .and_then(|n| n["nodeId"].as_str())
        {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    cli_call(gateway, url, &op_dir, &["nodes", "approve", &node_id])?;
    let mut n = 0;
    let pid = guest_sh(&mut ws, &node_id, &mut n, "pidof pincer-node").await?;
    let status = |key: &'static str, text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let idle = guest_sh(
        &mut ws,
        &node_id,
        &mut n,
        &format!("cat /proc/{pid}/status"),
    )
    .await?;

    let mut snaps = Vec::new();
    let mut size = (0, 0, 0);
    for i in 0..SNAPS + 2 {
        let t0 = Instant::now();
        let v = request(
            &mut ws,
            &format!("snap{i}"),
            "node.invoke",
            json!({ "nodeId": node_id, "command": "camera.snap", "timeoutMs": 60000,
                    "params": { "maxWidth": 640 }, "idempotencyKey": format!("snap{i}") }),
        )
        .await?;
        let dt = t0.elapsed();
        let p = &v["payload"];
        size = (
            p["width"].as_u64().unwrap_or(0),
            p["height"].as_u64().unwrap_or(0),
            p["base64"].as_str().map_or(0, |b| b.len() * 3 / 4),
        );
        if i >= 2 {
            snaps.push(dt);
        }
    }
    snaps.sort();
    let after = guest_sh(
        &mut ws,
        &node_id,
        &mut n,
        &format!("cat /proc/{pid}/status"),
    )
    .await?;
    // The same device, the same 640x480 YUYV format the snaps left set, read() one frame.
    let bare = guest_sh(
        &mut ws,
        &node_id,
        &mut n,
        &format!(
            "i=0; s=$(cut -d' ' -f1 /proc/uptime); while [ $i -lt {BARE} ]; do \
             dd if=/dev/video0 of=/dev/null bs=8M count=1 2>/dev/null; i=$((i+1)); done; \
             e=$(cut -d' ' -f1 /proc/uptime); \
             awk -v s=$s -v e=$e 'BEGIN {{ printf \"%d\\n\", (e - s) * 1000000 / {BARE} }}'; \
             dd if=/dev/video0 bs=8M count=1 2>/dev/null | wc -c; \
             s=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt {BARE5} ]; do \
             dd if=/dev/video0 of=/dev/null bs=614400 count=5 2>/dev/null; i=$((i+1)); done; \
             e=$(cut -d' ' -f1 /proc/uptime); \
             awk -v s=$s -v e=$e 'BEGIN {{ printf \"%d\\n\", (e - s) * 1000000 / {BARE5} }}'"
        ),
    )
    .await?;
    let mut lines = bare.lines();
    let bare_us: f64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let bare_bytes = lines.next().unwrap_or("?").trim().to_owned();
    let bare5_us: f64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(f64::NAN);
    // What an invoke costs without a device: system.run of `true`, timed at the operator.
    // A 10 s clip at 640×480: what the recording costs in memory (after the bare capture: a
    // clip leaves the device in the raw format it chose).
    let t0 = Instant::now();
    let clip = request(
        &mut ws,
        "clip",
        "node.invoke",
        json!({ "nodeId": node_id, "command": "camera.clip", "timeoutMs": 120000,
                "params": { "durationMs": 10000, "maxWidth": 640 }, "idempotencyKey": "clip" }),
    )
    .await?;
    let clip_ms = t0.elapsed();
    let clip_bytes = clip["payload"]["base64"]
        .as_str()
        .map_or(0, |b| b.len() * 3 / 4);
    let after_clip = guest_sh(
        &mut ws,
        &node_id,
        &mut n,
        &format!("cat /proc/{pid}/status"),
    )
    .await?;
    let mut trivial = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        guest_sh(&mut ws, &node_id, &mut n, "true").await?;
        trivial.push(t0.elapsed());
    }
    trivial.sort();
    // And without a process: system.which of one name (a PATH lookup in the guest).
    let mut which = Vec::new();
    for i in 0..5 {
        let t0 = Instant::now();
        request(
            &mut ws,
            &format!("which{i}"),
            "node.invoke",
            json!({ "nodeId": node_id, "command": "system.which", "timeoutMs": 60000,
                    "params": { "bins": ["sh"] }, "idempotencyKey": format!("which{i}") }),
        )
        .await?;
        which.push(t0.elapsed());
    }
    which.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = ms(snaps[snaps.len() / 2]) * 1000.0 / bare5_us;
    Ok(format!(
        "\n| camera (vivid in the qemu TCG VM, {SNAPS} samples) | value |\n|---|---|\n\
         | `camera.snap` maxWidth 640 end to end (invoke → JPEG at the operator), median | {:.0} ms |\n\
         | `camera.snap` min / max | {:.0} / {:.0} ms |\n\
         | photo | {}x{}, {} KB JPEG |\n\
         | bare V4L2 capture of one frame (`dd` read() of /dev/video0, same format, in the guest) | {:.0} ms ({} bytes) |\n\
         | bare V4L2 capture of 5 frames in one stream (the snap's 4 warm-up frames + 1) | {:.0} ms |\n\
         | snap / bare 5-frame capture (target ≤ 1.2×) | {:.2}× ({}) |\n\
         | `node.invoke` round trip without a device (`system.run true`), median | {:.0} ms |\n\
         | `node.invoke` round trip without a device or a process (`system.which sh`), median | {:.1} ms |\n\
         | pincer-node RSS idle (VmRSS) | {} |\n\
         | pincer-node peak RSS across the snaps (VmHWM) | {} |\n\
         | `camera.clip` 10 s, 640×480: answered in / MP4 size | {:.0} ms / {} KB |\n\
         | pincer-node peak RSS after the clip too (VmHWM) | {} |\n",
        ms(snaps[snaps.len() / 2]),
        ms(snaps[0]),
        ms(snaps[snaps.len() - 1]),
        size.0,
        size.1,
        size.2 / 1024,
        bare_us / 1000.0,
        bare_bytes,
        bare5_us / 1000.0,
        ratio,
        if ratio <= 1.2 { "met" } else { "OVER" },
        ms(trivial[trivial.len() / 2]),
        ms(which[which.len() / 2]),
        status("VmRSS:", &idle),
        status("VmHWM:", &after),
        ms(clip_ms),
        clip_bytes / 1024,
        status("VmHWM:", &after_clip),
    ))
}
