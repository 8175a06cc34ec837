//! What a GET on the port is answered with:
//!
//! * `/control-ui-config.json`: the Control UI's bootstrap config, behind the shared secret
//!   or an operator device token (`Authorization: Bearer …`), as the reference gates it;
//! * with `[control_ui] root` (or `--control-ui-dir`): files of that directory, precompressed
//!   `.br`/`.gz` siblings when the client takes them, `index.html` for paths that name no file
//!   (single-page app fallback);
//! * otherwise Pincer's own WebChat, compiled in (`webchat/`, gzip-compressed at build time).
//!
//! Every page carries `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`;
//! HTML also a strict CSP and `X-Frame-Options: DENY`. Hashed assets are cached for a year,
//! everything else revalidates (`ETag` / `Last-Modified`, `304`).

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::head::Head;
use super::{Body, Response};
use crate::hub::Hub;

/// The largest file served from `[control_ui] root` (the reference bundle's largest is ~2 MB).
pub const MAX_FILE: u64 = 32 * 1024 * 1024;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One embedded WebChat file.
pub struct Asset {
    /// URL path.
    pub path: &'static str,
    /// `Content-Type`.
    pub mime: &'static str,
    /// Entity tag (quoted).
    pub etag: &'static str,
    /// The file.
    pub raw: &'static [u8],
    /// The file, gzip-compressed.
    pub gzip: &'static [u8],
}

/// The WebChat, as `build.rs` embedded it.
pub static WEBCHAT: &[Asset] = include!(concat!(env!("OUT_DIR"), "/webchat_assets.rs"));

/// The CSP of the embedded WebChat: its own scripts and styles only, WebSocket to anywhere
/// (it connects to its own origin; the browser's `Origin` is checked by the gateway).
const WEBCHAT_CSP: &str = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:";

/// The answer to `head` (a request that is not a WebSocket upgrade).
pub async fn answer(hub: &Hub, head: &Head) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD here");
        r.headers.push(("allow", "GET, HEAD".into()));
        return with_common(r);
    }
    let ui = &hub.config.control_ui;
    let path = head.path();
    let r = if !ui.enabled {
        Response::text(404, "pages are off ([control_ui] enabled = false)")
    } else if path == "/control-ui-config.json" {
        control_ui_config(hub, head)
    } else if let Some(root) = &ui.root {
        from_dir(root, head).await
    } else {
        embedded(head)
    };
    with_common(r)
}

fn with_common(mut r: Response) -> Response {
    r.headers.push(("x-content-type-options", "nosniff".into()));
    r.headers.push(("referrer-policy", "no-referrer".into()));
    r
}

fn accepts(head: &Head, coding: &str) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n == "accept-encoding")
        .flat_map(|(_, v)| v.split(','))
        .any(|t| {
            let mut parts = t.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            name.eq_ignore_ascii_case(coding) && !q_zero
        })
}

fn html_headers(r: &mut Response, csp: String) {
    r.headers.push(("content-security-policy", csp));
    r.headers.push(("x-frame-options", "DENY".into()));
}

/// An embedded WebChat file; paths without an extension get the page itself.
fn embedded(head: &Head) -> Response {
    let path = head.path();
    let asset = WEBCHAT
        .iter()
        .find(|a| a.path == path)
        .or_else(|| (!last_segment(path).contains('.')).then(|| &WEBCHAT[0]));
    let Some(a) = asset else {
        return Response::text(404, "no such file");
    };
    let mut r = Response {
        status: 200,
        headers: vec![
            ("content-type", a.mime.into()),
            ("cache-control", "no-cache".into()),
            ("etag", a.etag.into()),
            ("vary", "accept-encoding".into()),
        ],
        body: Body::Empty,
    };
    if a.mime.starts_with("text/html") {
        html_headers(&mut r, WEBCHAT_CSP.into());
    }
    if head
        .header("if-none-match")
        .is_some_and(|t| t.split(',').any(|t| t.trim() == a.etag))
    {
        r.status = 304;
        return r;
    }
    if accepts(head, "gzip") {
        r.headers.push(("content-encoding", "gzip".into()));
        r.body = Body::Static(a.gzip);
    } else {
        r.body = Body::Static(a.raw);
    }
    r
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` as a relative path inside a served directory: percent-decoded, and refused when it
/// climbs out (`..`), names a hidden file or holds a NUL or backslash.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let rel = decoded.trim_start_matches('/');
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn mime_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        _ => "application/octet-stream",
    }
}

/// The file `rel` under `root` when it is a regular file there (symlinks are followed only
/// if they stay inside `root`).
async fn open_inside(
    root: &Path,
    rel: &Path,
) -> Option<(tokio::fs::File, std::fs::Metadata, PathBuf)> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    if !full.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&full).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let f = tokio::fs::File::open(&full).await.ok()?;
    Some((f, meta, full))
}

fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = pincer_os::civil_from_days(days);
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        pincer_os::weekday(days),
        MO[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A file of `[control_ui] root`.
async fn from_dir(root: &Path, head: &Head) -> Response {
    let Some(rel) = safe_relative(head.path()) else {
        return Response::text(404, "no such file");
    };
    let found = match open_inside(root, &rel).await {
        Some(f) => Some(f),
        None if !last_segment(head.path()).contains('.') => {
            open_inside(root, Path::new("index.html")).await
        }
        None => None,
    };
    let Some((file, meta, full)) = found else {
        return Response::text(404, "no such file");
    };
    let mime = mime_of(&full);
    let is_html = mime.starts_with("text/html");
    let immutable = rel.starts_with("assets") && !is_html;
    let modified = meta.modified().ok().map(http_date);
    let mut r = Response {
        status: 200,
        headers: vec![
            ("content-type", mime.into()),
            (
                "cache-control",
                if immutable { IMMUTABLE } else { "no-cache" }.into(),
            ),
            ("vary", "accept-encoding".into()),
        ],
        body: Body::Empty,
    };
    if let Some(m) = &modified {
        r.headers.push(("last-modified", m.clone()));
        if head.header("if-modified-since") == Some(m.as_str()) {
            r.status = 304;
            return r;
        }
    }
    if is_html {
        // Read whole (bounded by MAX_FILE) to hash its inline scripts into the CSP.
        let Ok(text) = tokio::fs::read(&full).await else {
            return Response::text(500, "cannot read the page");
        };
        html_headers(&mut r, bundle_csp(&text));
        r.body = Body::Owned(text);
        return r;
    }
    for (coding, ext) in [("br", "br"), ("gzip", "gz")] {
        if !accepts(head, coding) {
            continue;
        }
        let mut sibling = full.clone().into_os_string();
        sibling.push(".");
        sibling.push(ext);
        if let Ok(m) = tokio::fs::metadata(&sibling).await {
            if m.is_file() && m.len() <= MAX_FILE {
                if let Ok(f) = tokio::fs::File::open(&sibling).await {
                    r.headers.push(("content-encoding", coding.into()));
                    r.body = Body::File(f, m.len());
                    return r;
                }
            }
        }
    }
    r.body = Body::File(file, meta.len());
    r
}

/// The reference's Control UI CSP, with the page's inline scripts allowed by their SHA-256.
fn bundle_csp(html: &[u8]) -> String {
    let text = String::from_utf8_lossy(html);
    let mut scripts = String::from("'self'");
    let mut rest: &str = &text;
    while let Some(at) = rest.find("<script") {
        rest = &rest[at..];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let open = &rest[..open_end];
        let body = &rest[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !open.contains(" src=") && !body[..close].trim().is_empty() {
            let hash = Sha256::digest(&body.as_bytes()[..close]);
            scripts.push_str(&format!(
                " 'sha256-{}'",
                pincer_protocol::base64url::encode_standard(&hash)
            ));
        }
        rest = &body[close..];
    }
    format!(
        "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; frame-src 'self' http: https:; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; media-src 'self' data: blob:; font-src 'self'; worker-src 'self'; connect-src 'self' ws: wss: data:"
    )
}

/// `/control-ui-config.json`: 401 without the shared secret or a paired operator's device
/// token as a bearer token.
fn control_ui_config(hub: &Hub, head: &Head) -> Response {
    let bearer = head
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let shared = crate::auth::check_shared(&hub.config.auth, bearer, bearer).is_ok();
    let device = bearer.is_some_and(|t| !t.is_empty() && hub.devices.is_live_token("operator", t));
    if !shared && !device {
        let mut r = Response::text(401, "Unauthorized");
        r.headers.push(("www-authenticate", "Bearer".into()));
        return r;
    }
    let body = serde_json::json!({
        "basePath": "",
        "assistantName": hub.config.agent.name,
        "assistantAvatar": serde_json::Value::Null,
        "assistantAgentId": "main",
        "serverVersion": crate::VERSION,
        "serverBuildId": crate::VERSION,
        "embedSandbox": "scripts",
        "allowExternalEmbedUrls": false,
        "automaticallyFetchFavicons": false,
        "communityInvite": serde_json::Value::Null,
        "terminalEnabled": false,
        "cliAgentsEnabled": false,
        "pluginAssetsRequireAuth": false,
        "pluginFrameGrants": [],
    });
    Response {
        status: 200,
        headers: vec![
            ("content-type", "application/json; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        body: Body::Owned(body.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        assert_eq!(
            safe_relative("/assets/a.js"),
            Some(PathBuf::from("assets/a.js"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/a%20b.txt"), Some(PathBuf::from("a b.txt")));
        for bad in [
            "/../etc/passwd",
            "/assets/%2e%2e/%2e%2e/x",
            "/.git/config",
            "/a%00b",
            "/a\\b",
            "/%zz",
            "//etc/passwd/../..",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_rfc_7231() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_128_630);
        assert_eq!(http_date(t), "Tue, 01 Dec 2026 12:37:10 GMT");
    }

    #[test]
    fn inline_scripts_are_hashed_into_the_csp() {
        let csp =
            bundle_csp(b"<script>a()</script><script type=\"module\" src=\"./x.js\"></script>");
        assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 1);
    }

    #[test]
    fn encodings_with_q_zero_are_not_taken() {
        let h = |v: &str| Head {
            method: "GET".into(),
            target: "/".into(),
            minor: 1,
            headers: vec![("accept-encoding".into(), v.into())],
        };
        assert!(accepts(&h("gzip, deflate, br, zstd"), "br"));
        assert!(!accepts(&h("gzip;q=0, br"), "gzip"));
        assert!(!accepts(&h("identity"), "gzip"));
    }
}
