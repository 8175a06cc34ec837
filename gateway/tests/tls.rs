//! `[tls]` on the real gateway binary: `wss://` with a pinned certificate, a wrong pin refused
//! before any frame, `https://` pages on the same port, and the generated certificate kept
//! across a restart.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use pincer_gateway::operator::call::{call, CallOptions};
use pincer_gateway::tls::{Tls, TlsConfig};
use serde_json::json;
use support::{Gateway, TOKEN};

fn tls_gateway(dir: &Path, extra: &[&str]) -> Gateway {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "[tls]\nenabled = true\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut args = vec!["--config", &config];
    args.extend_from_slice(extra);
    Gateway::start_in(&dir.join("state"), TOKEN, &args)
}

/// The SHA-256 of the pair the gateway generated into its state dir (read back by the
/// gateway's own loader: what it logs and puts in `status`).
fn fingerprint_on_disk(dir: &Path) -> String {
    let on = TlsConfig {
        enabled: true,
        ..TlsConfig::default()
    };
    Tls::load(&on, &dir.join("state"))
        .expect("the generated pair")
        .fingerprint()
        .to_owned()
}

/// `GET /` over TLS, with the gateway's own certificate as the one root (it names localhost).
async fn https_get(port: u16, dir: &Path) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let der = rustls_pki_types::CertificateDer::from_pem_file(dir.join("state/tls/cert.pem"))
        .expect("the generated certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("the certificate as a root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut body)).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn opts(gw: &Gateway, pin: Option<&str>, state: &Path) -> CallOptions {
    let mut o = CallOptions::new(format!("wss://127.0.0.1:{}", gw.port), state.to_owned());
    o.token = Some(TOKEN.into());
    o.timeout = Duration::from_secs(10);
    o.tls_fingerprint = pin.map(str::to_owned);
    o
}

#[tokio::test]
async fn wss_with_the_pinned_certificate_a_wrong_pin_refused_and_the_pin_kept_across_restarts() {
    let dir = std::env::temp_dir().join(format!("pincer-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = tls_gateway(&dir, &[]);
    let pin = fingerprint_on_disk(&dir);
    let client = dir.join("client");

    // Pinned: in, and `status` says what to pin.
    let status = call(&opts(&gw, Some(&pin), &client), "status", json!({}))
        .await
        .expect("status over wss:// with the pin");
    assert_eq!(status["gateway"]["tls"]["enabled"], true);
    assert_eq!(status["gateway"]["tls"]["fingerprintSha256"], pin.as_str());
    // The `sha256:` and colon-separated forms pin the same certificate.
    let colons: Vec<String> = pin
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    let other_form = format!("sha256:{}", colons.join(":"));
    call(&opts(&gw, Some(&other_form), &client), "health", json!({}))
        .await
        .expect("health with the pin in another form");

    // A wrong pin: refused in the TLS handshake, so no WebSocket, no frame, no connect.
    let wrong = "ab".repeat(32);
    let err = call(&opts(&gw, Some(&wrong), &client), "health", json!({}))
        .await
        .expect_err("a wrong pin must not connect");
    let text = err.to_string();
    assert!(
        text.contains("does not match the pin") && text.contains(&pin),
        "{text}"
    );
    // No pin: the self-signed certificate is not in the public roots.
    let err = call(&opts(&gw, None, &client), "health", json!({}))
        .await
        .expect_err("an unpinned self-signed certificate must not be trusted");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // Plain ws:// on a TLS port gets nowhere either.
    let mut plain = CallOptions::new(format!("ws://127.0.0.1:{}", gw.port), client.clone());
    plain.token = Some(TOKEN.into());
    plain.timeout = Duration::from_secs(3);
    assert!(call(&plain, "health", json!({})).await.is_err());

    // The operator CLI's own flag: `pincer-gateway call --tls-fingerprint`.
    let out = std::process::Command::new(support::BIN)
        .args(["call", "health", "--token", TOKEN, "--url"])
        .arg(format!("wss://127.0.0.1:{}", gw.port))
        .arg("--state-dir")
        .arg(&client)
        .args(["--tls-fingerprint", &pin])
        .output()
        .expect("pincer-gateway call");
    assert!(
        out.status.success(),
        "call --tls-fingerprint: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // HTTPS on the same port: WebChat, trusting exactly the generated certificate.
    let page = https_get(gw.port, &dir).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.to_lowercase().contains("<html"), "{page}");

    // HTTP on the same port is HTTPS: a plain request gets no page.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered on the TLS port"
    );

    // Restart on the same state: the same certificate, so the same pin still works.
    drop(gw);
    let gw = tls_gateway(&dir, &[]);
    assert_eq!(fingerprint_on_disk(&dir), pin);
    call(&opts(&gw, Some(&pin), &client), "health", json!({}))
        .await
        .expect("the old pin after a restart");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A socket that opens and never starts the TLS handshake is closed at the pre-auth deadline
/// (it does not hold its slot for ever).
#[test]
fn a_silent_socket_is_dropped_at_the_handshake_deadline() {
    let dir = std::env::temp_dir().join(format!("pincer-tls-silent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = tls_gateway(&dir, &["--handshake-timeout-ms", "1000"]);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    // Far past the deadline: only a gateway that never closes reaches this bound.
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let read = tcp.read_to_end(&mut got);
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the gateway kept a silent socket open: {read:?}"
    );
    assert!(
        got.is_empty(),
        "sent {} bytes to a silent socket",
        got.len()
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
