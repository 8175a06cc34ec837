//! `pincer-bench webchat`: what a browser pays to open the chat page, in headless Chromium
//! (`tests/support/cdp.rs`), for three servers in one run:
//!
//! * pincer-gateway serving its own embedded WebChat;
//! * pincer-gateway serving the official Control UI bundle (`--control-ui-dir` pointed at the
//!   installed reference's `dist/control-ui`);
//! * OpenClaw serving that same bundle itself.
//!
//! For each: a **first visit** (fresh browser profile: empty cache, no device identity yet; the
//! median of three browsers) and a **return visit** (the same tab navigates away and back with the
//! cache and the identity in place; the median of five). Figures per visit:
//!
//! * bytes received over HTTP on the wire, headers included (the sum of Chromium's
//!   `encodedDataLength` over the responses the page loaded until the network was quiet for a
//!   second; the WebSocket is not counted), and the number of those responses;
//! * navigation → `DOMContentLoaded`, and navigation → connected: the first WebSocket message
//!   carrying `hello-ok` (the connect handshake's answer), stamped in the page with
//!   `performance.now()` by a `WebSocket` wrapper installed before any page script runs.
//!
//! Every visit opens `/#token=<token>`. Both gateways have the same fake model configured, so the
//! pages load what they would load for a user; nothing is sent to the model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::agent::fake_provider::{Dialect, FakeProvider};
use crate::agent::{spawn_openclaw, spawn_pincer};
use crate::cdp::{Browser, Options, Page};
use crate::{Server, TOKEN};

/// Fresh browsers per server for the first-visit figures.
const FIRST_VISITS: usize = 3;
/// Return visits per server.
const RETURN_VISITS: usize = 5;
/// How long a visit may take to connect before the run fails.
const CONNECT_WITHIN: Duration = Duration::from_secs(60);
/// The network counts as quiet once no response finished for this long.
const QUIET: Duration = Duration::from_secs(1);

/// Installed before any script of the page: stamps the first `hello-ok` the page receives.
const HELLO_STAMP: &str = r#"(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        if (window.__pincerHelloAt === undefined && typeof e.data === 'string'
            && e.data.includes('"hello-ok"')) {
          window.__pincerHelloAt = performance.now();
        }
      });
    }
  };
})();"#;

/// One visit's figures.
#[derive(Clone, Copy, Default)]
struct Visit {
    bytes: u64,
    responses: usize,
    dom_ms: f64,
    connected_ms: f64,
}

/// A server's first and return visits (medians).
struct Figures {
    first: Visit,
    back: Visit,
}

/// Loads `url` in `page` (after `about:blank`, so a same-URL visit is a real navigation) and
/// waits for the connect and a quiet network.
fn visit(page: &Page, url: &str) -> Result<Visit> {
    page.goto("about:blank");
    let before = page.requests().len();
    page.goto(url);
    let t0 = Instant::now();
    let connected = loop {
        let v = page.eval("window.__pincerHelloAt ?? null");
        if let Some(ms) = v.as_f64() {
            break ms;
        }
        if t0.elapsed() > CONNECT_WITHIN {
            bail!(
                "{url}: no hello-ok within {CONNECT_WITHIN:?}; console:\n{}",
                page.console().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let what the page loads after connecting (lazy views, icons) finish.
    let mut seen = page.requests().len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET && t0.elapsed() < CONNECT_WITHIN {
        std::thread::sleep(Duration::from_millis(100));
        let now = page.requests().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    let loaded: Vec<_> = page.requests().into_iter().skip(before).collect();
    let dom = page
        .eval("performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? null");
    Ok(Visit {
        bytes: loaded.iter().map(|r| r.encoded_bytes).sum(),
        responses: loaded.len(),
        dom_ms: dom.as_f64().unwrap_or(f64::NAN),
        connected_ms: connected,
    })
}

fn launch() -> Result<Browser> {
    Browser::launch(Options::default()).ok_or_else(|| {
        anyhow!("no chromium found (apt-get install chromium, or set PINCER_CHROMIUM)")
    })
}

fn prepare(page: &Page) {
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": HELLO_STAMP }),
    );
}

/// Medians, field by field.
fn median(mut v: Vec<Visit>) -> Visit {
    let mid = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut bytes: Vec<f64> = v.iter().map(|x| x.bytes as f64).collect();
    let mut resp: Vec<f64> = v.iter().map(|x| x.responses as f64).collect();
    let mut dom: Vec<f64> = v.iter().map(|x| x.dom_ms).collect();
    let mut conn: Vec<f64> = v.iter().map(|x| x.connected_ms).collect();
    v.clear();
    Visit {
        bytes: mid(&mut bytes) as u64,
        responses: mid(&mut resp) as usize,
        dom_ms: mid(&mut dom),
        connected_ms: mid(&mut conn),
    }
}

/// The browser side of one server, on a blocking thread (the DevTools driver is synchronous and
/// panics on a browser failure; a panic comes back as an error).
async fn measure(url: String) -> Result<Figures> {
    tokio::task::spawn_blocking(move || -> Result<Figures> {
        let mut firsts = Vec::new();
        for _ in 0..FIRST_VISITS {
            let browser = launch()?;
            let page = browser.page();
            prepare(&page);
            firsts.push(visit(&page, &url)?);
        }
        let browser = launch()?;
        let page = browser.page();
        prepare(&page);
        visit(&page, &url)?;
        let mut backs = Vec::new();
        for _ in 0..RETURN_VISITS {
            backs.push(visit(&page, &url)?);
        }
        Ok(Figures {
            first: median(firsts),
            back: median(backs),
        })
    })
    .await
    .map_err(|e| anyhow!("the browser side failed: {e}"))?
}

/// The page URL of a server whose WebSocket is at `ws_url`.
fn page_url(ws_url: &str) -> String {
    let http = ws_url.replacen("ws://", "http://", 1);
    format!("{}/#token={TOKEN}", http.trim_end_matches('/'))
}

async fn measure_server(server: Server) -> Result<Figures> {
    let f = measure(page_url(&server.url)).await;
    server.stop().await;
    f
}

fn kb(b: u64) -> String {
    format!("{:.1} KB", b as f64 / 1000.0)
}

fn ms(x: f64) -> String {
    format!("{x:.0} ms")
}

/// Runs the WebChat figures and prints them as a markdown table.
pub async fn run(gateway: &Path, openclaw: Option<(PathBuf, PathBuf)>) -> Result<()> {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let bundle = openclaw
        .as_ref()
        .map(|(_, mjs)| mjs.with_file_name("dist").join("control-ui"))
        .filter(|d| d.join("index.html").is_file());

    eprintln!("pincer-gateway, its own WebChat…");
    let own = measure_server(spawn_pincer(gateway, &fake, &[]).await?).await?;

    let official = match &bundle {
        Some(dir) => {
            eprintln!("pincer-gateway, the official Control UI…");
            let args = ["--control-ui-dir".to_owned(), dir.display().to_string()];
            Some(measure_server(spawn_pincer(gateway, &fake, &args).await?).await?)
        }
        None => None,
    };
    let reference = match &openclaw {
        Some((node, mjs)) if node.exists() && mjs.exists() => {
            eprintln!("OpenClaw, its own Control UI…");
            let server = spawn_openclaw(node, mjs, &fake)
                .await
                .context("start OpenClaw")?;
            Some(measure_server(server).await?)
        }
        _ => None,
    };

    println!(
        "pincer-bench webchat, {}, headless {}; first visit: median of {FIRST_VISITS} fresh \
         profiles, return visit: median of {RETURN_VISITS}\n",
        crate::utc_now(),
        chromium_version()
    );
    println!(
        "| figure | pincer-gateway, own WebChat | pincer-gateway, official Control UI | OpenClaw 2026.9.6, its Control UI |"
    );
    println!("|---|---|---|---|");
    let cols = [Some(&own), official.as_ref(), reference.as_ref()];
    let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| c.map_or_else(|| "skipped".to_owned(), f))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("first visit: bytes over HTTP (responses)", &|f| {
        format!("{} ({})", kb(f.first.bytes), f.first.responses)
    });
    row("first visit: navigation → DOMContentLoaded", &|f| {
        ms(f.first.dom_ms)
    });
    row("first visit: navigation → connected (hello-ok)", &|f| {
        ms(f.first.connected_ms)
    });
    row("return visit: bytes over HTTP (responses)", &|f| {
        format!("{} ({})", kb(f.back.bytes), f.back.responses)
    });
    row("return visit: navigation → DOMContentLoaded", &|f| {
        ms(f.back.dom_ms)
    });
    row("return visit: navigation → connected (hello-ok)", &|f| {
        ms(f.back.connected_ms)
    });
    Ok(())
}

/// `chromium --version`, for the header.
fn chromium_version() -> String {
    let bin = std::env::var("PINCER_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "Chromium".into())
}
