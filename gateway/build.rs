//! Embeds the WebChat (`webchat/`): each file as it is and gzip-compressed, with an entity tag
//! from its content, in a table `src/http/embedded.rs` includes. Compressing here keeps the
//! compressor out of the binary.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// The files served, their URL paths and content types.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "/", "text/html; charset=utf-8"),
    ("app.js", "/app.js", "application/javascript; charset=utf-8"),
    (
        "ed25519.js",
        "/ed25519.js",
        "application/javascript; charset=utf-8",
    ),
    ("app.css", "/app.css", "text/css; charset=utf-8"),
    ("icon.svg", "/icon.svg", "image/svg+xml"),
    (
        "manifest.webmanifest",
        "/manifest.webmanifest",
        "application/manifest+json; charset=utf-8",
    ),
];

/// FNV-1a, 64 bits: an entity tag only has to change when the content does.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("webchat");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let mut table = String::from("&[\n");
    for (file, path, mime) in FILES {
        let src = dir.join(file);
        println!("cargo:rerun-if-changed={}", src.display());
        let raw = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).expect("in memory");
        let gz = gz.finish().expect("in memory");
        let gz_path = out.join(format!("{file}.gz"));
        std::fs::write(&gz_path, &gz).expect("OUT_DIR is writable");
        writeln!(
            table,
            "    Asset {{ path: {path:?}, mime: {mime:?}, etag: \"\\\"{:016x}\\\"\", raw: include_bytes!({:?}), gzip: include_bytes!({:?}) }},",
            fnv(&raw),
            src.display().to_string(),
            gz_path.display().to_string(),
        )
        .expect("in memory");
    }
    table.push(']');
    std::fs::write(out.join("webchat_assets.rs"), table).expect("OUT_DIR is writable");
}
