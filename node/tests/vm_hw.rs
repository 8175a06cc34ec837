//! The hardware classes on real kernel drivers: a static `pincer-node` boots in an x86-64 qemu
//! VM (Debian's kernel, `tests/vm/`) with `vivid` (V4L2 camera), `bochs` (DRM/KMS + fbdev) and
//! `snd-aloop` (ALSA loopback), connects to a pincer-gateway in this process (host loopback =
//! 10.0.2.2 in the guest), and everything is invoked through the gateway as an operator would:
//!
//! * `camera.list` shows the vivid capture node and none of its output/metadata nodes;
//!   `camera.snap` decodes to the requested size and shows vivid's colour bars; two snaps at
//!   once are both answered; the camera unbound mid-snap → `CAMERA_UNAVAILABLE`, the node
//!   serves the next command, and the camera works again once rebound.
//! * `screen.snapshot` (PNG and JPEG) shows the red/blue halves `/init` drew on fb0.
//! * `audio.record` on the loopback's capture side hears the 1 kHz tone `audio.play` sent into
//!   the playback side (frequency measured).
//! * The agent's `nodes` tool takes a photo: a fake model provider (anthropic-messages) asks
//!   for `camera_snap`, and the photo from vivid reaches it as image content in the next
//!   request (decoded: a JPEG of the asked width with the colour bars).
//! * The same from Telegram: a DM "take a photo" through a fake Bot API
//!   (`tests/support/fake_telegram.rs`) comes back as a `sendPhoto` whose JPEG is vivid's.
//!
//! Needs `PINCER_VM_NODE` (a static x86_64-musl `pincer-node`; `scripts/test.sh` builds it) and
//! qemu (installed by `tests/vm/build.sh`). Without them the test says so and passes, unless
//! `PINCER_REQUIRE_VM=1`.

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;
#[path = "../../tests/support/fake_telegram.rs"]
mod fake_telegram;
#[path = "../../gateway/tests/support/openclaw.rs"]
mod openclaw;
mod support;
use support::gateway::Gw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pincer_client::ClientError;
use pincer_gateway::config::Overrides;
use pincer_gateway::operator::call::{call, CallOptions};
use serde_json::{json, Value};

const TOKEN: &str = "vm-hardware-token";
const SCREEN: (u32, u32) = (1024, 768);

struct Qemu {
    child: Child,
    console: Arc<Mutex<Vec<String>>>,
}

impl Qemu {
    fn console(&self) -> String {
        self.console
            .lock()
            .map(|c| c.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The board owner's Telegram user id.
const OWNER: i64 = 4242;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the initramfs around `node` (cached downloads make this a few seconds).
fn build_vm(out: &Path, node: &Path) {
    build_vm_with(out, node, false)
}

/// `m2m`: also the out-of-tree `v4l2-mem2mem` + `vicodec` modules (`PINCER_VM_M2M=1`).
fn build_vm_with(out: &Path, node: &Path, m2m: bool) {
    std::fs::create_dir_all(out.join("extra")).expect("mkdir");
    let policy = out.join("extra/exec-policy.toml");
    std::fs::write(&policy, "mode = \"full\"\n").expect("policy");
    let status = Command::new("bash")
        .arg(repo().join("tests/vm/build.sh"))
        .arg(out)
        .arg(node)
        .arg(format!("{}:/state/node/exec-policy.toml", policy.display()))
        .env("PINCER_VM_M2M", if m2m { "1" } else { "0" })
        .status()
        .expect("run tests/vm/build.sh");
    assert!(status.success(), "tests/vm/build.sh failed");
}

/// Boots the VM; `node_args` is the guest node's command line (no spaces inside arguments).
fn boot(out: &Path, node_args: &str) -> Qemu {
    boot_with(out, "", node_args)
}

/// [`boot`] with more kernel command line options for `/init` (`pincer.vicodec=…`).
fn boot_with(out: &Path, cmdline: &str, node_args: &str) -> Qemu {
    let mut child = Command::new("bash")
        .arg(repo().join("tests/vm/boot.sh"))
        .arg(out)
        .args(["--screen", &format!("{}x{}", SCREEN.0, SCREEN.1)])
        .args(["--cmdline", &format!("pincer.novfb {cmdline}"), "--"])
        .args(node_args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/vm/boot.sh");
    let console = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sink = console.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("PINCER_VM_VERBOSE").is_some() {
                    eprintln!("vm| {line}");
                }
                if let Ok(mut c) = sink.lock() {
                    c.push(line);
                }
            }
        });
    }
    Qemu { child, console }
}

/// Approves the VM node's pairing and its command surface once it asks; its node id.
async fn paired_node(op: &CallOptions, vm: &Qemu) -> String {
    let booted = Instant::now();
    // The guest reaches the gateway through qemu's NAT: a remote device (its Host header is
    // 10.0.2.2), so the operator approves its pairing as for any new board.
    let node_id = loop {
        if let Ok(v) = call(op, "device.pair.list", json!({})).await {
            if let Some(req) = v["pending"]
                .as_array()
                .and_then(|p| p.first())
                .and_then(|p| p["requestId"].as_str())
            {
                call(op, "device.pair.approve", json!({ "requestId": req }))
                    .await
                    .expect("device.pair.approve");
            }
        }
        if let Ok(v) = call(op, "node.list", json!({})).await {
            if let Some(id) = v["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["connected"] == true))
                .and_then(|n| n["nodeId"].as_str())
            {
                break id.to_owned();
            }
        }
        assert!(
            booted.elapsed() < Duration::from_secs(120),
            "the VM's node never connected; console:\n{}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "node connected {} ms after qemu started",
        booted.elapsed().as_millis()
    );

    // The operator approves the node's capture commands once.
    let pending = call(op, "node.pair.list", json!({}))
        .await
        .expect("node.pair.list");
    let req = pending["pending"][0]["requestId"]
        .as_str()
        .expect("a pending surface approval")
        .to_owned();
    call(op, "node.pair.approve", json!({ "requestId": req }))
        .await
        .expect("approve");
    node_id
}

async fn invoke(
    op: &CallOptions,
    node: &str,
    cmd: &str,
    params: Value,
) -> Result<Value, ClientError> {
    call(
        op,
        "node.invoke",
        json!({ "nodeId": node, "command": cmd, "params": params, "timeoutMs": 60000,
                "idempotencyKey": format!("{cmd}-{}-{}", pincer_gateway::now_ms(), rand_suffix()) }),
    )
    .await
    .map(|v| v["payload"].clone())
}

async fn invoke_within(
    op: &CallOptions,
    node: &str,
    cmd: &str,
    params: Value,
    timeout_ms: u64,
) -> Result<Value, ClientError> {
    call(
        op,
        "node.invoke",
        json!({ "nodeId": node, "command": cmd, "params": params, "timeoutMs": timeout_ms,
                "idempotencyKey": format!("{cmd}-{}-{}", pincer_gateway::now_ms(), rand_suffix()) }),
    )
    .await
    .map(|v| v["payload"].clone())
}

/// What ffprobe says of an MP4: (video codec, duration in seconds, decoded frame count).
fn ffprobe(mp4: &[u8]) -> (String, f64, u64) {
    let dir = std::env::temp_dir().join(format!("pincer-vm-clip-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let f = dir.join("clip.mp4");
    std::fs::write(&f, mp4).expect("write clip");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration,format_name",
        ])
        .args(["-of", "json"])
        .arg(&f)
        .output()
        .expect("ffprobe (Debian's ffmpeg package) runs");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        v["format"]["format_name"]
            .as_str()
            .unwrap_or("")
            .contains("mp4"),
        "{v}"
    );
    (
        v["streams"][0]["codec_name"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        v["streams"][0]["nb_read_frames"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
    )
}

/// The MP4's picture at `at_s` seconds, decoded by ffmpeg, as (width, height, RGB).
fn ffmpeg_frame(mp4: &[u8], at_s: f64) -> (u32, u32, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("pincer-vm-frame-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (f, png) = (dir.join("clip.mp4"), dir.join("frame.png"));
    std::fs::write(&f, mp4).expect("write clip");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_s:.2}"), "-i"])
        .arg(&f)
        .args(["-frames:v", "1", "-pix_fmt", "rgb24"])
        .arg(&png)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = decode_png(&std::fs::read(&png).expect("frame.png"));
    let _ = std::fs::remove_dir_all(&dir);
    img
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn b64(v: &Value) -> Vec<u8> {
    pincer_protocol::base64url::decode(v["base64"].as_str().expect("base64")).expect("valid base64")
}

/// Decoded JPEG as (width, height, RGB bytes).
fn decode_jpeg(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    let px = d.decode().expect("JPEG decodes");
    let info = d.info().expect("JPEG info");
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (u32::from(info.width), u32::from(info.height), px)
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().expect("PNG header");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("PNG decodes");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// With `PINCER_VM_KEEP=DIR`, writes the decoded image as DIR/NAME.png for a human to look at.
fn keep(name: &str, img: &(u32, u32, Vec<u8>)) {
    let Some(dir) = std::env::var_os("PINCER_VM_KEEP") else {
        return;
    };
    let Ok(f) = std::fs::File::create(Path::new(&dir).join(format!("{name}.png"))) else {
        return;
    };
    let mut e = png::Encoder::new(f, img.0, img.1);
    e.set_color(png::ColorType::Rgb);
    if let Ok(mut w) = e.write_header() {
        let _ = w.write_image_data(&img.2);
    }
}

fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * img.0 + x) * 3) as usize;
    [img.2[i], img.2[i + 1], img.2[i + 2]]
}

/// vivid's default pattern is 75% colour bars: white, yellow, cyan, green, magenta, red, blue,
/// black, left to right. Checks the middle of each bar below the text overlay.
fn assert_colour_bars(img: &(u32, u32, Vec<u8>)) {
    // (r, g, b) high or low.
    const BARS: [(bool, bool, bool); 8] = [
        (true, true, true),
        (true, true, false),
        (false, true, true),
        (false, true, false),
        (true, false, true),
        (true, false, false),
        (false, false, true),
        (false, false, false),
    ];
    // The OSD text covers the top ~145 rows whatever the size: sample near the bottom.
    let y = img.1 - 1 - img.1 / 20;
    for (i, want) in BARS.iter().enumerate() {
        let x = (2 * i as u32 + 1) * img.0 / 16;
        let p = pixel(img, x, y);
        let level = |v: u8, high: bool| if high { v > 140 } else { v < 70 };
        assert!(
            level(p[0], want.0) && level(p[1], want.1) && level(p[2], want.2),
            "bar {i} at ({x},{y}) is {p:?}, want rgb high/low {want:?}"
        );
    }
}

/// Red left half, blue right half (what `tests/vm/init` draws on fb0).
fn assert_red_blue(img: &(u32, u32, Vec<u8>), tolerance: u8) {
    for (fx, fy) in [
        (0.1, 0.1),
        (0.25, 0.5),
        (0.4, 0.9),
        (0.6, 0.1),
        (0.75, 0.5),
        (0.9, 0.9),
    ] {
        let (x, y) = ((img.0 as f64 * fx) as u32, (img.1 as f64 * fy) as u32);
        let p = pixel(img, x, y);
        let want = if fx < 0.5 { [255, 0, 0] } else { [0, 0, 255] };
        let close = p.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= tolerance);
        assert!(close, "pixel ({x},{y}) is {p:?}, want {want:?}");
    }
}

/// A 16-bit mono WAV of `freq` Hz at `rate` for `ms`.
fn tone_wav(freq: f64, rate: u32, ms: u32) -> Vec<u8> {
    let n = rate * ms / 1000;
    let samples: Vec<u8> = (0..n)
        .flat_map(|i| {
            let s = (2.0 * std::f64::consts::PI * freq * f64::from(i) / f64::from(rate)).sin();
            ((s * 12_000.0) as i16).to_le_bytes()
        })
        .collect();
    pincer_hal::audio::wav::encode(&samples, rate, 1)
}

/// Dominant frequency of the loud part of a mono 16-bit WAV (zero crossings), and its peak.
fn tone_of(wav: &[u8]) -> (f64, i16) {
    let w = pincer_hal::audio::wav::decode(wav).expect("WAV decodes");
    assert_eq!(w.channels, 1);
    let s: Vec<i16> = w
        .data
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let loud: Vec<usize> = (0..s.len())
        .filter(|&i| s[i].unsigned_abs() > 3000)
        .collect();
    let (Some(&a), Some(&b)) = (loud.first(), loud.last()) else {
        return (0.0, s.iter().map(|v| v.saturating_abs()).max().unwrap_or(0));
    };
    let seg = &s[a..=b];
    let crossings = seg.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
    let secs = seg.len() as f64 / f64::from(w.rate);
    let peak = seg.iter().map(|v| v.saturating_abs()).max().unwrap_or(0);
    (crossings as f64 / 2.0 / secs, peak)
}

/// One VM at a time: the tests of this file share two cores with the emulator.
static ONE_VM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vm_node() -> Option<PathBuf> {
    let node = std::env::var_os("PINCER_VM_NODE").map(PathBuf::from);
    if node.is_none() {
        assert!(
            std::env::var("PINCER_REQUIRE_VM").map_or(true, |v| v != "1"),
            "PINCER_VM_NODE (static pincer-node) not set"
        );
        eprintln!("skipping: set PINCER_VM_NODE to a static x86_64-musl pincer-node (scripts/test.sh does)");
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_screen_audio_on_real_drivers() {
    let Some(node_bin) = vm_node() else { return };
    let _one = ONE_VM.lock().await;
    let dir = std::env::temp_dir().join(format!("pincer-vm-hw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    build_vm(&dir.join("vm"), &node_bin);

    let fake = fake_provider::FakeProvider::start(fake_provider::Dialect::Anthropic).await;
    let base_url = fake.base_url();
    // The owner's phone, through a fake Bot API: "take a photo" must come back as this
    // board's camera picture.
    let tg = fake_telegram::FakeTelegram::start().await;
    let api_root = tg.api_root();
    let gw = Gw::start_with(
        Overrides {
            port: Some(0),
            state_dir: Some(dir.join("gw")),
            token: Some(TOKEN.into()),
            ..Default::default()
        },
        |cfg| {
            use pincer_agent::config::{AgentConfig, AgentSection, ModelsConfig, ProviderConfig};
            let mut models = ModelsConfig::default();
            models.providers.insert(
                "claude".into(),
                ProviderConfig {
                    base_url,
                    api: pincer_agent::provider::Api::AnthropicMessages,
                    api_key: Some("k".into()),
                    models: vec![],
                    timeout_seconds: None,
                },
            );
            let section = AgentSection {
                model: Some("claude/fake-claude".into()),
                tool_timeout_ms: Some(90_000),
                ..Default::default()
            };
            cfg.agent = AgentConfig::resolve(&section, &models, &cfg.state_dir);
            cfg.channels.telegram = pincer_channels::telegram::config::TelegramSection {
                bot_token: Some(fake_telegram::TOKEN.into()),
                api_root: Some(api_root),
                allow_from: vec![OWNER.to_string()],
                poll_timeout_s: Some(2),
                ..Default::default()
            };
        },
    )
    .await;
    let port = gw.port;
    let mut op = CallOptions::new(format!("ws://127.0.0.1:{port}"), dir.join("operator"));
    op.token = Some(TOKEN.into());
    op.timeout = Duration::from_secs(90);

    let vm = boot(
        &dir.join("vm"),
        &format!(
            "run --gateway ws://10.0.2.2:{port} --token {TOKEN} --caps camera,screen,audio,system \
             --name vm-board --state-dir /state/node"
        ),
    );
    let node_id = paired_node(&op, &vm).await;
    let desc = call(&op, "node.describe", json!({ "nodeId": node_id }))
        .await
        .expect("describe");
    for c in [
        "camera.list",
        "camera.snap",
        "screen.snapshot",
        "audio.list",
        "audio.record",
        "audio.play",
        "camera.clip",
        "screen.record",
    ] {
        assert!(
            desc["commands"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == c)),
            "{c} not invocable: {desc}"
        );
    }

    // --- camera ---
    let list = invoke(&op, &node_id, "camera.list", json!({}))
        .await
        .expect("camera.list");
    let devices = list["devices"].as_array().expect("devices").clone();
    assert_eq!(devices.len(), 1, "only vivid's capture node: {list}");
    assert_eq!(devices[0]["id"], "/dev/video0");
    assert_eq!(devices[0]["name"], "vivid-000-vid-cap");
    assert_eq!(devices[0]["deviceType"], "v4l2");

    let t = Instant::now();
    let snap = invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 640 }))
        .await
        .expect("camera.snap");
    eprintln!(
        "camera.snap 640 wide in {} ms (emulated CPU)",
        t.elapsed().as_millis()
    );
    assert_eq!(snap["format"], "jpg");
    let img = decode_jpeg(&b64(&snap));
    // vivid's webcam input offers 640x360 and 640x480 among its sizes.
    assert!(
        img.0 == 640 && matches!(img.1, 360 | 480),
        "{}x{}",
        img.0,
        img.1
    );
    assert_eq!(
        (snap["width"].as_u64(), snap["height"].as_u64()),
        (Some(u64::from(img.0)), Some(u64::from(img.1)))
    );
    keep("snap640", &img);
    assert_colour_bars(&img);

    // The agent takes a photo: the model asks for one, and gets the image.
    fake.push(fake_provider::Reply::ToolCall {
        id: "toolu_snap".into(),
        name: "nodes".into(),
        arguments: json!({ "action": "camera_snap", "node": node_id, "maxWidth": 320 }).to_string(),
        preamble: None,
    });
    fake.push(fake_provider::Reply::Text {
        chunks: vec!["I see colour bars.".into()],
        delay_ms: 0,
    });
    let mut s = pincer_gateway::operator::call::session(&op)
        .await
        .expect("session");
    s.request(
        "chat.send",
        &json!({ "sessionKey": "main", "message": "What does the camera see?", "idempotencyKey": "snap-1" }),
    )
    .await
    .expect("chat.send");
    let fin = loop {
        let e = tokio::time::timeout(Duration::from_secs(120), s.next_event())
            .await
            .expect("a final within 120 s")
            .expect("open");
        let p = e.payload.unwrap_or_default();
        if e.event.as_str() == "chat"
            && p["runId"] == "snap-1"
            && matches!(p["state"].as_str(), Some("final" | "error" | "aborted"))
        {
            break p;
        }
    };
    assert_eq!(fin["state"], "final", "{fin}");
    let reqs = fake.wait_requests(2, Duration::from_secs(10)).await;
    let image = reqs[1].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .flat_map(|c| {
            let mut v = vec![c.clone()];
            v.extend(c["content"].as_array().cloned().unwrap_or_default());
            v
        })
        .find(|c| c["type"] == "image")
        .unwrap_or_else(|| panic!("no image went to the model: {}", reqs[1].body));
    assert_eq!(image["source"]["media_type"], "image/jpeg", "{image}");
    let img = decode_jpeg(&b64(&json!({ "base64": image["source"]["data"] })));
    assert_eq!(img.0, 320, "{}x{}", img.0, img.1);
    assert_colour_bars(&img);
    drop(s);

    // The same from Telegram: the owner asks from the phone, the photo the board's camera took
    // comes back with sendPhoto.
    fake.push(fake_provider::Reply::ToolCall {
        id: "toolu_tg_snap".into(),
        name: "nodes".into(),
        arguments: json!({ "action": "camera_snap", "node": node_id, "maxWidth": 320 }).to_string(),
        preamble: None,
    });
    fake.push(fake_provider::Reply::Text {
        chunks: vec!["Here is the view.".into()],
        delay_ms: 0,
    });
    tg.dm(OWNER, "Ann", "take a photo");
    let calls = tg
        .wait_for(Duration::from_secs(180), |c| {
            c.iter().any(|c| c.method == "sendPhoto")
        })
        .await;
    let photo = calls
        .iter()
        .find(|c| c.method == "sendPhoto")
        .expect("sendPhoto");
    let (field, _, mime, bytes) = photo.file.clone().expect("a multipart photo");
    assert_eq!((field.as_str(), mime.as_str()), ("photo", "image/jpeg"));
    let img = decode_jpeg(&bytes);
    assert_eq!(img.0, 320, "{}x{}", img.0, img.1);
    keep("telegram-photo", &img);
    assert_colour_bars(&img);
    assert!(
        calls
            .iter()
            .any(|c| c.method == "editMessageText" || c.method == "sendMessage"),
        "the text came too"
    );

    // A width between the camera's sizes: the next smaller mode, no upscaling.
    let snap = invoke(
        &op,
        &node_id,
        "camera.snap",
        json!({ "maxWidth": 400, "quality": 0.5 }),
    )
    .await
    .expect("camera.snap 400");
    let img = decode_jpeg(&b64(&snap));
    keep("snap400", &img);
    assert!(img.0 <= 400 && img.0 >= 320, "{}x{}", img.0, img.1);
    assert_colour_bars(&img);

    // Two snaps at once on the one camera: both answered (they queue on the device).
    let (a, b) = tokio::join!(
        invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 })),
        invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 })),
    );
    for r in [a, b] {
        match r {
            Ok(v) => assert_colour_bars(&decode_jpeg(&b64(&v))),
            Err(ClientError::Method(e)) => {
                assert!(e.message.contains("in use"), "concurrent snap: {e:?}")
            }
            Err(e) => panic!("concurrent snap: {e:?}"),
        }
    }

    // Another program streaming from the camera: a typed "in use" error, then photos again.
    let sh = |script: &str| json!({ "command": ["sh", "-c", script] });
    let other = invoke(
        &op,
        &node_id,
        "system.run",
        sh("setsid dd if=/dev/video0 of=/dev/null bs=1M count=100000 </dev/null >/dev/null 2>&1 & sleep 1; echo started"),
    )
    .await
    .expect("start another reader");
    assert_eq!(other["exitCode"], 0, "{other}");
    match invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 })).await {
        Err(ClientError::Method(e)) => {
            eprintln!("snap while another program streams: {}", e.message);
            assert!(
                e.message.starts_with("CAMERA_UNAVAILABLE")
                    && e.message.contains("in use by another program"),
                "{e:?}"
            );
        }
        other => panic!("snap of a busy camera: {other:?}"),
    }
    let stopped = invoke(
        &op,
        &node_id,
        "system.run",
        sh("kill $(pidof dd) && sleep 1"),
    )
    .await
    .expect("stop the other reader");
    assert_eq!(stopped["exitCode"], 0, "{stopped}");
    let snap = invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 }))
        .await
        .expect("camera.snap once the other program is gone");
    assert_colour_bars(&decode_jpeg(&b64(&snap)));

    // --- screen ---
    let shot = invoke(&op, &node_id, "screen.snapshot", json!({}))
        .await
        .expect("screen.snapshot");
    assert_eq!(shot["format"], "png");
    let img = decode_png(&b64(&shot));
    assert_eq!((img.0, img.1), SCREEN);
    assert_red_blue(&img, 0);
    let shot = invoke(
        &op,
        &node_id,
        "screen.snapshot",
        json!({ "format": "jpg", "maxWidth": 512 }),
    )
    .await
    .expect("screen.snapshot jpg");
    let img = decode_jpeg(&b64(&shot));
    assert_eq!((img.0, img.1), (512, 384));
    assert_red_blue(&img, 40);
    match invoke(
        &op,
        &node_id,
        "screen.snapshot",
        json!({ "screenIndex": 7 }),
    )
    .await
    {
        Err(ClientError::Method(e)) => assert!(e.message.contains("no screen 7"), "{e:?}"),
        other => panic!("absent screen: {other:?}"),
    }

    // --- video: H.264 MP4 clips that ffmpeg plays ---
    let t = Instant::now();
    let clip = invoke(&op, &node_id, "camera.clip", json!({ "durationMs": 3000 }))
        .await
        .expect("camera.clip");
    eprintln!(
        "camera.clip of 3 s answered in {} ms (emulated CPU)",
        t.elapsed().as_millis()
    );
    assert_eq!(clip["format"], "mp4");
    assert_eq!(
        clip["hasAudio"], false,
        "no AAC encoder: no audio track, said so"
    );
    let mp4 = b64(&clip);
    let (codec, secs, frames) = ffprobe(&mp4);
    eprintln!(
        "camera.clip: {} bytes, {codec}, {secs:.3} s, {frames} frames",
        mp4.len()
    );
    assert_eq!(codec, "h264");
    assert!((2.7..=3.3).contains(&secs), "duration {secs} s, asked 3 s");
    assert!(frames >= 3, "{frames} frames");
    let ms = clip["durationMs"].as_u64().expect("durationMs");
    assert!((2700..=3300).contains(&ms), "durationMs {ms}");
    let img = ffmpeg_frame(&mp4, 1.5);
    keep("clip-frame", &img);
    assert_eq!(img.0, 640, "{}x{}", img.0, img.1);
    assert_colour_bars(&img);

    let rec = invoke(
        &op,
        &node_id,
        "screen.record",
        json!({ "durationMs": 2000, "fps": 10 }),
    )
    .await
    .expect("screen.record");
    assert_eq!(
        (
            rec["format"].as_str(),
            rec["fps"].as_u64(),
            rec["screenIndex"].as_u64()
        ),
        (Some("mp4"), Some(10), Some(0))
    );
    let mp4 = b64(&rec);
    let (codec, secs, frames) = ffprobe(&mp4);
    eprintln!(
        "screen.record: {} bytes, {codec}, {secs:.3} s, {frames} frames",
        mp4.len()
    );
    assert_eq!(codec, "h264");
    assert!((1.8..=2.2).contains(&secs), "duration {secs} s, asked 2 s");
    let img = ffmpeg_frame(&mp4, 1.0);
    keep("record-frame", &img);
    assert_eq!((img.0, img.1), SCREEN);
    assert_red_blue(&img, 48);
    match invoke(&op, &node_id, "screen.record", json!({ "format": "gif" })).await {
        Err(ClientError::Method(e)) => assert!(e.message.starts_with("INVALID_REQUEST"), "{e:?}"),
        other => panic!("screen.record as gif: {other:?}"),
    }

    // Two clips at once on the one camera: the second waits for the first (as snaps do), both
    // are whole.
    let (a, b) = tokio::join!(
        invoke(&op, &node_id, "camera.clip", json!({ "durationMs": 1000 })),
        invoke(&op, &node_id, "camera.clip", json!({ "durationMs": 1000 })),
    );
    for r in [a, b] {
        let v = r.expect("both clips of a busy camera are answered");
        let (codec, secs, _) = ffprobe(&b64(&v));
        assert_eq!(codec, "h264");
        assert!((0.9..=1.1).contains(&secs), "{secs} s");
    }

    // A cancelled recording lets go of the camera at once: a 40 s clip whose invoke times out
    // after 2 s (the gateway sends node.invoke.cancel), then a photo that must not wait for
    // the rest of those 40 s.
    match invoke_within(
        &op,
        &node_id,
        "camera.clip",
        json!({ "durationMs": 40000 }),
        2000,
    )
    .await
    {
        Err(ClientError::Method(e)) => assert!(e.message.contains("TIMEOUT"), "{e:?}"),
        other => panic!("a clip longer than its invoke: {other:?}"),
    }
    let snap = invoke_within(
        &op,
        &node_id,
        "camera.snap",
        json!({ "maxWidth": 320 }),
        20_000,
    )
    .await
    .expect("the camera is free soon after the cancel");
    assert_colour_bars(&decode_jpeg(&b64(&snap)));

    // --- audio: the tone played into the loopback is what is recorded on the other side ---
    let list = invoke(&op, &node_id, "audio.list", json!({}))
        .await
        .expect("audio.list");
    let ids = |k: &str| -> Vec<String> {
        list[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(ids("inputs").contains(&"hw:0,1".to_owned()), "{list}");
    assert!(ids("outputs").contains(&"hw:0,0".to_owned()), "{list}");
    assert!(
        ids("outputs").contains(&"hw:1,0".to_owned()),
        "the dummy card: {list}"
    );
    let wav = tone_wav(1000.0, 48_000, 1000);
    let op2 = op.clone();
    let node2 = node_id.clone();
    let recording = tokio::spawn(async move {
        invoke(
            &op2,
            &node2,
            "audio.record",
            json!({ "deviceId": "hw:Loopback,1", "durationMs": 2500, "sampleRate": 48000, "channels": 1 }),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let played = invoke(
        &op,
        &node_id,
        "audio.play",
        json!({ "deviceId": "hw:0,0", "base64": pincer_protocol::base64url::encode_standard(&wav) }),
    )
    .await
    .expect("audio.play");
    assert_eq!(played["played"], true);
    assert_eq!(played["durationMs"], 1000);
    let rec = recording.await.expect("join").expect("audio.record");
    assert_eq!(rec["format"], "wav");
    assert_eq!(
        (rec["sampleRate"].as_u64(), rec["channels"].as_u64()),
        (Some(48_000), Some(1))
    );
    let (freq, peak) = tone_of(&b64(&rec));
    assert!(
        (freq - 1000.0).abs() < 15.0,
        "recorded tone is {freq:.1} Hz, peak {peak}"
    );
    assert!(peak > 10_000, "recorded peak {peak}");
    match invoke(&op, &node_id, "audio.record", json!({ "durationMs": 50 })).await {
        Err(ClientError::Method(e)) => assert!(e.message.starts_with("INVALID_REQUEST"), "{e:?}"),
        other => panic!("too short a recording: {other:?}"),
    }
    match invoke(
        &op,
        &node_id,
        "audio.play",
        json!({ "base64": "bm90IGEgd2F2" }),
    )
    .await
    {
        Err(ClientError::Method(e)) => assert!(e.message.contains("WAV"), "{e:?}"),
        other => panic!("not a WAV: {other:?}"),
    }

    // --- the camera is unplugged in the middle of a snap ---
    let op2 = op.clone();
    let node2 = node_id.clone();
    let long_snap = tokio::spawn(async move {
        invoke(
            &op2,
            &node2,
            "camera.snap",
            json!({ "maxWidth": 320, "delayMs": 6000 }),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let unbind = invoke(
        &op,
        &node_id,
        "system.run",
        sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind"),
    )
    .await
    .expect("unbind");
    assert_eq!(unbind["exitCode"], 0, "{unbind}");
    match long_snap.await.expect("join") {
        Err(ClientError::Method(e)) => {
            eprintln!("snap across the unplug: {}", e.message);
            assert_eq!(e.code, "UNAVAILABLE", "{e:?}");
            assert!(e.message.contains("CAMERA_UNAVAILABLE"), "{e:?}");
        }
        other => panic!("snap across an unplug: {other:?}"),
    }
    // The node carries on: no camera now, the screen still answers.
    let list = invoke(&op, &node_id, "camera.list", json!({}))
        .await
        .expect("camera.list");
    assert_eq!(list["devices"], json!([]));
    match invoke(&op, &node_id, "camera.snap", json!({})).await {
        Err(ClientError::Method(e)) => assert!(e.message.contains("CAMERA_UNAVAILABLE"), "{e:?}"),
        other => panic!("snap with no camera: {other:?}"),
    }
    invoke(
        &op,
        &node_id,
        "screen.snapshot",
        json!({ "format": "jpg", "maxWidth": 64 }),
    )
    .await
    .expect("the node still serves");
    // Plugged back in: photos again.
    invoke(
        &op,
        &node_id,
        "system.run",
        sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/bind"),
    )
    .await
    .expect("bind");
    let snap = invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 }))
        .await
        .expect("camera.snap after replug");
    assert_colour_bars(&decode_jpeg(&b64(&snap)));

    // Unplugged in the middle of a clip: CAMERA_UNAVAILABLE, and photos after the replug.
    let op2 = op.clone();
    let node2 = node_id.clone();
    let long_clip = tokio::spawn(async move {
        invoke(&op2, &node2, "camera.clip", json!({ "durationMs": 8000 })).await
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let unbind = invoke(
        &op,
        &node_id,
        "system.run",
        sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind"),
    )
    .await
    .expect("unbind");
    assert_eq!(unbind["exitCode"], 0, "{unbind}");
    match long_clip.await.expect("join") {
        Err(ClientError::Method(e)) => {
            eprintln!("clip across the unplug: {}", e.message);
            assert!(e.message.contains("CAMERA_UNAVAILABLE"), "{e:?}");
        }
        other => panic!(
            "clip across an unplug: {:?}",
            other.map(|v| v["durationMs"].clone())
        ),
    }
    invoke(
        &op,
        &node_id,
        "system.run",
        sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/bind"),
    )
    .await
    .expect("bind");
    let snap = invoke(&op, &node_id, "camera.snap", json!({ "maxWidth": 320 }))
        .await
        .expect("camera.snap after the clip's unplug");
    assert_colour_bars(&decode_jpeg(&b64(&snap)));

    let console = vm.console();
    assert!(!console.contains("panicked"), "node panicked:\n{console}");
    drop(vm);
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hardware-encoder path (`pincer_hal::video::m2m`) against a real kernel
/// memory-to-memory driver: `vicodec` (FWHT, the same stateful-encoder ioctl sequence as the
/// Pi's `bcm2835-codec`), built out of tree for the VM's kernel, once single-planar and once
/// multi-planar. `pincer-node doctor` runs the encoder's self-test: ten pictures queued, ten
/// FWHT frames dequeued (magic `4f4f4f4f ffffffff`), drained with `V4L2_ENC_CMD_STOP`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_encoder_path_on_vicodec() {
    let Some(node_bin) = vm_node() else { return };
    let _one = ONE_VM.lock().await;
    let dir = std::env::temp_dir().join(format!("pincer-vm-m2m-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    build_vm_with(&dir.join("vm"), &node_bin, true);
    for (cmdline, api) in [
        ("", "single-planar"),
        ("pincer.vicodec=multiplanar=1", "multi-planar"),
    ] {
        let console = doctor_console(&dir.join("vm"), cmdline).await;
        let line = console
            .lines()
            .find(|l| l.starts_with("video") && l.contains("vicodec"))
            .unwrap_or_else(|| panic!("no vicodec line from doctor:\n{console}"));
        eprintln!("{api}: {line}");
        assert!(line.contains(" ok "), "{line}");
        assert!(line.contains(&format!("FWHT ({api})")), "{line}");
        assert!(line.contains("10 test pictures in, 10 units out"), "{line}");
        assert!(line.contains("head 4f4f4f4fffffffff"), "FWHT magic: {line}");
        // vicodec codes FWHT, not H.264: clips keep the software encoder.
        assert!(
            console
                .lines()
                .any(|l| l.starts_with("video") && l.contains("clips use software")),
            "{console}"
        );
        assert!(!console.contains("panicked"), "{console}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `PINCER_VM_LIBCAMERA=1`: the VM with `vimc` (a media-controller camera: sensor, debayer,
/// scaler, capture nodes, built out of tree) and Debian's libcamera with `cam`.
fn build_libcamera_vm(out: &Path, node: &Path) {
    std::fs::create_dir_all(out).expect("mkdir");
    let status = Command::new("bash")
        .arg(repo().join("tests/vm/build.sh"))
        .arg(out)
        .arg(node)
        .env("PINCER_VM_LIBCAMERA", "1")
        .status()
        .expect("run tests/vm/build.sh");
    assert!(status.success(), "tests/vm/build.sh (libcamera) failed");
}

/// Boots the VM and runs `doctor`; its whole console once the node exits.
async fn doctor_console(out: &Path, cmdline: &str) -> String {
    let vm = boot_with(out, cmdline, "doctor --state-dir /state/node");
    let started = Instant::now();
    loop {
        let c = vm.console();
        if c.contains("PINCER-VM NODE EXIT") {
            return c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "doctor did not finish in the VM:\n{c}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A CSI-style camera through libcamera: `vimc`'s media graph gives nothing plain V4L2 capture
/// can photograph, libcamera's vimc pipeline handler can. `camera.list` shows it once, as a
/// libcamera device named from libcamera's properties (and none of vimc's V4L2 nodes), beside
/// vivid's plain V4L2 camera; `camera.snap` on it returns a JPEG of vimc's colour bars taken
/// through `cam`; `doctor` says which path each camera takes. With `cam` removed, the camera is
/// still listed, `camera.snap` is `CAMERA_UNAVAILABLE` saying what to install, and `doctor`
/// says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcamera_camera_on_vimc() {
    const VIMC: &str = "libcamera:platform/vimc.0 Sensor B";
    let Some(node_bin) = vm_node() else { return };
    let _one = ONE_VM.lock().await;
    let dir = std::env::temp_dir().join(format!("pincer-vm-libcamera-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    build_libcamera_vm(&dir.join("vm"), &node_bin);

    // doctor: the path per camera.
    let console = doctor_console(&dir.join("vm"), "").await;
    let line = console
        .lines()
        .find(|l| l.starts_with("camera") && l.contains("Sensor B"))
        .unwrap_or_else(|| panic!("no libcamera camera line from doctor:\n{console}"));
    assert!(line.contains(" ok "), "{line}");
    assert!(line.contains("libcamera via /usr/bin/cam"), "{line}");
    assert!(
        console
            .lines()
            .any(|l| l.starts_with("camera") && l.contains("/dev/video0") && l.contains("V4L2")),
        "{console}"
    );

    let gw = Gw::start(Overrides {
        port: Some(0),
        state_dir: Some(dir.join("gw")),
        token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    let mut op = CallOptions::new(format!("ws://127.0.0.1:{}", gw.port), dir.join("operator"));
    op.token = Some(TOKEN.into());
    op.timeout = Duration::from_secs(90);
    let args = format!(
        "run --gateway ws://10.0.2.2:{} --token {TOKEN} --caps camera --name vm-csi --state-dir /state/node",
        gw.port
    );

    let vm = boot(&dir.join("vm"), &args);
    let node_id = paired_node(&op, &vm).await;
    let list = invoke(&op, &node_id, "camera.list", json!({}))
        .await
        .expect("camera.list");
    let devices = list["devices"].as_array().expect("devices").clone();
    assert_eq!(devices.len(), 2, "vimc once, vivid once: {list}");
    assert_eq!(devices[0]["id"], VIMC, "{list}");
    assert_eq!(devices[0]["name"], "Sensor B");
    assert_eq!(devices[0]["position"], "back");
    assert_eq!(devices[0]["deviceType"], "libcamera");
    assert_eq!(devices[1]["id"], "/dev/video0");
    assert_eq!(devices[1]["deviceType"], "v4l2");

    let snap = invoke(
        &op,
        &node_id,
        "camera.snap",
        json!({ "deviceId": VIMC, "maxWidth": 640 }),
    )
    .await
    .unwrap_or_else(|e| panic!("camera.snap on vimc: {e}\n{}", vm.console()));
    assert_eq!(snap["format"], "jpg");
    let img = decode_jpeg(&b64(&snap));
    eprintln!("vimc through cam: {}x{}", img.0, img.1);
    // libcamera's vimc pipeline rounds sizes down to multiples of 6 (640x480 -> 636x480).
    assert!(img.0 <= 640 && img.0 >= 600, "{}x{}", img.0, img.1);
    assert_eq!(
        (snap["width"].as_u64(), snap["height"].as_u64()),
        (Some(u64::from(img.0)), Some(u64::from(img.1)))
    );
    keep("vimc", &img);
    assert_colour_bars(&img);

    // A clip: cam streams frames while the node codes them.
    let clip = invoke(
        &op,
        &node_id,
        "camera.clip",
        json!({ "deviceId": VIMC, "durationMs": 2000, "maxWidth": 640 }),
    )
    .await
    .unwrap_or_else(|e| panic!("camera.clip on vimc: {e}\n{}", vm.console()));
    assert_eq!(clip["format"], "mp4");
    let mp4 = b64(&clip);
    let (codec, secs, frames) = ffprobe(&mp4);
    eprintln!(
        "vimc clip through cam: {} bytes, {codec}, {secs:.3} s, {frames} frames",
        mp4.len()
    );
    assert_eq!(codec, "h264");
    assert!((1.7..=2.3).contains(&secs), "duration {secs} s, asked 2 s");
    assert!(frames >= 3, "{frames} frames");
    let img = ffmpeg_frame(&mp4, 1.0);
    keep("vimc-clip-frame", &img);
    assert!(img.0 <= 640 && img.0 >= 600, "{}x{}", img.0, img.1);
    assert_colour_bars(&img);
    drop(vm);

    // The tools removed: listed, and unavailable with the reason.
    let vm = boot_with(&dir.join("vm"), "pincer.nocam", &args);
    let node_id = paired_node(&op, &vm).await;
    let list = invoke(&op, &node_id, "camera.list", json!({}))
        .await
        .expect("camera.list");
    let devices = list["devices"].as_array().expect("devices").clone();
    assert_eq!(devices.len(), 2, "{list}");
    assert_eq!(devices[0]["deviceType"], "libcamera", "{list}");
    let id = devices[0]["id"].as_str().expect("id").to_owned();
    let e = invoke(&op, &node_id, "camera.snap", json!({ "deviceId": id }))
        .await
        .expect_err("a snap without libcamera's tools");
    let text = format!("{e:?}");
    assert!(text.contains("CAMERA_UNAVAILABLE"), "{text}");
    assert!(text.contains("libcamera-tools"), "{text}");
    let e = invoke(
        &op,
        &node_id,
        "camera.clip",
        json!({ "deviceId": id, "durationMs": 1000 }),
    )
    .await
    .expect_err("a clip without libcamera's tools");
    let text = format!("{e:?}");
    assert!(text.contains("CAMERA_UNAVAILABLE"), "{text}");
    assert!(text.contains("libcamera-tools"), "{text}");
    // The webcam beside it still works.
    let snap = invoke(
        &op,
        &node_id,
        "camera.snap",
        json!({ "deviceId": "/dev/video0", "maxWidth": 320 }),
    )
    .await
    .expect("vivid still snaps");
    assert_eq!(decode_jpeg(&b64(&snap)).0, 320);
    drop(vm);

    let console = doctor_console(&dir.join("vm"), "pincer.nocam").await;
    let line = console
        .lines()
        .find(|l| l.starts_with("camera") && l.contains("libcamera:"))
        .unwrap_or_else(|| panic!("no libcamera line from doctor:\n{console}"));
    assert!(line.contains(" FAIL "), "{line}");
    assert!(line.contains("libcamera-tools"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// gpsfake runs gpsd as its child: the whole process group goes together.
struct Gpsfake(Child);
impl Drop for Gpsfake {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-g", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gpsfake(port: u16) -> Gpsfake {
    use std::os::unix::process::CommandExt;
    let child = Command::new("gpsfake")
        .process_group(0)
        .args(["-q", "-n", "-c", "0.05", "-P", &port.to_string()])
        .arg(repo().join("tests/nmea/berlin.nmea"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gpsfake (apt-get install gpsd gpsd-clients)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gpsfake's gpsd did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Gpsfake(child)
}

/// What a user does with the real OpenClaw 2026.9.6: allow the node commands in
/// `gateway.nodes.allowCommands`, approve the board's pairing and its command surface with the
/// CLI, then `openclaw nodes camera snap` saves a photo and `openclaw nodes location get`
/// prints the position — from pincer-node in the VM, on vivid and a gpsd fed by gpsfake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_openclaw_snaps_a_photo_and_gets_a_position() {
    let Some(node_bin) = vm_node() else { return };
    let Some(r) = openclaw::reference() else {
        return;
    };
    let _one = ONE_VM.lock().await;
    let dir = std::env::temp_dir().join(format!("pincer-vm-oc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    build_vm(&dir.join("vm"), &node_bin);
    let gps_port = openclaw::free_port();
    let _gps = gpsfake(gps_port);
    let port = openclaw::free_port();
    let home = dir.join("openclaw");
    let _gw = r.start_gateway_configured(
        &home,
        port,
        false,
        json!({ "allowCommands": ["camera.list", "camera.snap", "camera.clip", "screen.record", "location.get"] }),
    );
    let url = format!("ws://127.0.0.1:{port}");
    let vm = boot(
        &dir.join("vm"),
        &format!(
            "run --gateway ws://10.0.2.2:{port} --token {} --caps camera,location,screen \
             --gpsd 10.0.2.2:{gps_port} --name vm-board --state-dir /state/node",
            openclaw::TOKEN
        ),
    );
    // Pair the board (it is remote to the gateway: qemu's NAT), then approve its surface.
    let started = Instant::now();
    let node_id = loop {
        let list = openclaw::json_of(&r.cli(&home, &url, &["devices", "list", "--json"]));
        if let Some(req) = list["pending"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(|p| p["requestId"].as_str())
        {
            let o = r.cli(&home, &url, &["devices", "approve", req]);
            assert!(o.status.success(), "{}", openclaw::show(&o));
        }
        let v = openclaw::json_of(&r.cli(&home, &url, &["nodes", "status", "--json"]));
        if let Some(id) = v["nodes"].as_array().and_then(|a| {
            a.iter()
                .find(|n| n["displayName"] == "vm-board" && n["connected"] == true)
                .and_then(|n| n["nodeId"].as_str().map(str::to_owned))
        }) {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the VM's node never connected to OpenClaw; console:\n{}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let pending = openclaw::json_of(&r.cli(&home, &url, &["nodes", "pending", "--json"]));
    let list = pending
        .as_array()
        .or(pending["pending"].as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(req) = list.iter().find(|p| p["nodeId"] == node_id.as_str()) {
        let o = r.cli(
            &home,
            &url,
            &[
                "nodes",
                "approve",
                req["requestId"].as_str().expect("requestId"),
            ],
        );
        assert!(o.status.success(), "{}", openclaw::show(&o));
    }

    // `openclaw nodes camera snap` writes the photo and prints where.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let o = r.cli(
            &home,
            &url,
            &[
                "nodes",
                "camera",
                "snap",
                "--node",
                "vm-board",
                "--facing",
                "front",
                "--max-width",
                "640",
                "--json",
            ],
        );
        if o.status.success() {
            break openclaw::json_of(&o);
        }
        assert!(
            Instant::now() < deadline,
            "openclaw nodes camera snap kept failing: {}\nconsole:\n{}",
            openclaw::show(&o),
            vm.console()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let path = find_path(&out).unwrap_or_else(|| panic!("no file path in {out}"));
    let img = decode_jpeg(&std::fs::read(&path).expect("the saved photo"));
    assert_eq!(img.0, 640, "{out}");
    assert_colour_bars(&img);

    // `openclaw nodes camera clip` and `openclaw nodes screen record` save MP4s that ffprobe
    // reads as H.264.
    let o = r.cli(
        &home,
        &url,
        &[
            "nodes",
            "camera",
            "clip",
            "--node",
            "vm-board",
            "--duration",
            "3000",
            "--json",
        ],
    );
    assert!(
        o.status.success(),
        "{}\nconsole:\n{}",
        openclaw::show(&o),
        vm.console()
    );
    let out = openclaw::json_of(&o);
    let path = find_path(&out).unwrap_or_else(|| panic!("no file path in {out}"));
    let (codec, secs, _) = ffprobe(&std::fs::read(&path).expect("the saved clip"));
    eprintln!(
        "openclaw nodes camera clip: {} ({codec}, {secs:.3} s)",
        path.display()
    );
    assert_eq!(codec, "h264", "{out}");
    assert!((2.7..=3.3).contains(&secs), "{secs} s");
    let o = r.cli(
        &home,
        &url,
        &[
            "nodes",
            "screen",
            "record",
            "--node",
            "vm-board",
            "--duration",
            "2000",
            "--json",
        ],
    );
    assert!(
        o.status.success(),
        "{}\nconsole:\n{}",
        openclaw::show(&o),
        vm.console()
    );
    let out = openclaw::json_of(&o);
    let path = find_path(&out).unwrap_or_else(|| panic!("no file path in {out}"));
    let mp4 = std::fs::read(&path).expect("the saved recording");
    let (codec, secs, _) = ffprobe(&mp4);
    eprintln!(
        "openclaw nodes screen record: {} ({codec}, {secs:.3} s)",
        path.display()
    );
    assert_eq!(codec, "h264", "{out}");
    assert!((1.8..=2.2).contains(&secs), "{secs} s");
    assert_red_blue(&ffmpeg_frame(&mp4, 1.0), 48);

    // `openclaw nodes location get` prints the NMEA log's position.
    let o = r.cli(
        &home,
        &url,
        &["nodes", "location", "get", "--node", "vm-board", "--json"],
    );
    assert!(o.status.success(), "{}", openclaw::show(&o));
    let v = openclaw::json_of(&o);
    let loc = if v["lat"].is_number() {
        v.clone()
    } else {
        v["payload"].clone()
    };
    let (lat, lon) = (
        loc["lat"].as_f64().expect("lat"),
        loc["lon"].as_f64().expect("lon"),
    );
    let (want_lat, want_lon) = (52.0 + 31.2005 / 60.0, 13.0 + 24.2972 / 60.0);
    let dy = (lat - want_lat).to_radians() * 6_371_000.0;
    let dx = (lon - want_lon).to_radians() * 6_371_000.0 * want_lat.to_radians().cos();
    assert!((dx * dx + dy * dy).sqrt() < 1.0, "{v}");
    assert_eq!(loc["source"], "gps", "{v}");
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first string in `v` that names an existing file.
fn find_path(v: &Value) -> Option<PathBuf> {
    match v {
        Value::String(s) if Path::new(s).is_file() => Some(PathBuf::from(s)),
        Value::Array(a) => a.iter().find_map(find_path),
        Value::Object(o) => o.values().find_map(find_path),
        _ => None,
    }
}
