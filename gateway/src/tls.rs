//! `[tls]`: the gateway's port speaks TLS (`wss://`, and `https://` for WebChat and health).
//!
//! The certificate comes from `cert` and `key` (PEM files), or — with neither named — from a
//! self-signed ECDSA P-256 pair generated once into the state dir (`tls/cert.pem`,
//! `tls/key.pem`, 0600) and reused on every start, so a pinned client keeps working. Clients
//! pin the SHA-256 of the leaf certificate's DER ([`Tls::fingerprint`], lowercase hex: what
//! OpenClaw's `gateway.remote.tlsFingerprint` / `--tls-fingerprint` and `pincer-node
//! --tls-fingerprint` take).
//!
//! Owns: loading, generating, the acceptor, and [`Stream`] (a plain or TLS socket, what the
//! HTTP front and the WebSocket read). Not the handshake deadline: [`crate::link`] bounds the
//! TLS handshake with the connection's own pre-auth deadline.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Where a generated pair lives, under the state dir.
pub const GENERATED_DIR: &str = "tls";

/// Why TLS could not be set up (the gateway does not start).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A named or stored file could not be read or written.
    #[error("TLS file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A PEM file holds no certificate, or no usable private key.
    #[error("TLS file {path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Only one of `cert` and `key` is named.
    #[error("[tls] needs both cert and key, or neither (a self-signed pair is generated)")]
    HalfPair,
    /// The certificate could not be generated.
    #[error("cannot generate a TLS certificate: {0}")]
    Generate(String),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS certificate and key are not usable: {0}")]
    Rustls(String),
}

/// `[tls]` resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Serve TLS on the port.
    pub enabled: bool,
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// The port's TLS side, ready to accept.
pub struct Tls {
    acceptor: TlsAcceptor,
    fingerprint: String,
    /// Where the certificate came from (for the log).
    pub source: PathBuf,
    /// True when the pair was generated on this start.
    pub generated: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the named pair, or the stored generated one, generating it first if absent.
    pub fn load(cfg: &TlsConfig, state_dir: &Path) -> Result<Tls, TlsError> {
        let (cert, key, generated) = match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            (None, None) => {
                let dir = state_dir.join(GENERATED_DIR);
                let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
                let generated = if c.exists() && k.exists() {
                    false
                } else {
                    generate(&dir, &c, &k)?;
                    true
                };
                (c, k, generated)
            }
            _ => return Err(TlsError::HalfPair),
        };
        let chain = read_chain(&cert)?;
        let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
            path: key.clone(),
            message: format!("no usable private key: {e}"),
        })?;
        let fingerprint = pincer_client::pin::fingerprint(chain[0].as_ref());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
            source: cert,
            generated,
        })
    }

    /// SHA-256 of the leaf certificate's DER, lowercase hex (64 digits).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The TLS handshake on an accepted socket (the caller bounds it in time).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        Ok(Stream::Tls(Box::new(self.acceptor.accept(tcp).await?)))
    }
}

/// The leaf-first chain in `path`.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::File {
            path: path.to_owned(),
            source,
        },
        e => pem(e.to_string()),
    })?;
    let chain = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(pem("no CERTIFICATE block".into()));
    }
    Ok(chain)
}

/// A self-signed pair for this host into `dir` (0700), each file written atomically (0600):
/// the key first, so a crash between the two leaves no certificate without its key.
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let file = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::File { path, source }
    };
    pincer_os::ensure_private_dir(dir).map_err(file(dir))?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Some(host) = hostname() {
        names.push(host);
    }
    let pair =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    pincer_os::write_atomic(key, pair.key_pair.serialize_pem().as_bytes()).map_err(file(key))?;
    pincer_os::write_atomic(cert, pair.cert.pem().as_bytes()).map_err(file(cert))?;
    Ok(())
}

/// This host's name, for the generated certificate's names.
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h.len() < 254).then(|| h.to_owned())
}

/// An accepted socket: plain, or TLS after its handshake.
pub enum Stream {
    /// `ws://` and `http://`.
    Plain(TcpStream),
    /// `wss://` and `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pincer-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_generated_pair_is_kept_and_reused() {
        let state = dir("gen");
        let on = TlsConfig {
            enabled: true,
            ..TlsConfig::default()
        };
        let first = Tls::load(&on, &state).unwrap();
        assert!(first.generated);
        assert_eq!(first.fingerprint().len(), 64);
        let again = Tls::load(&on, &state).unwrap();
        assert!(!again.generated);
        assert_eq!(again.fingerprint(), first.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The named files work the same, and give the same fingerprint.
        let named = TlsConfig {
            enabled: true,
            cert: Some(state.join("tls/cert.pem")),
            key: Some(state.join("tls/key.pem")),
        };
        assert_eq!(
            Tls::load(&named, &dir("named")).unwrap().fingerprint(),
            first.fingerprint()
        );
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let state = dir("bad");
        std::fs::create_dir_all(&state).unwrap();
        let (c, k) = (state.join("c.pem"), state.join("k.pem"));
        std::fs::write(&c, "not a certificate\n").unwrap();
        std::fs::write(&k, "").unwrap();
        let cfg = |cert: Option<PathBuf>, key: Option<PathBuf>| TlsConfig {
            enabled: true,
            cert,
            key,
        };
        assert!(matches!(
            Tls::load(&cfg(Some(c.clone()), None), &state),
            Err(TlsError::HalfPair)
        ));
        assert!(matches!(
            Tls::load(&cfg(Some(c.clone()), Some(k.clone())), &state),
            Err(TlsError::Pem { .. })
        ));
        assert!(matches!(
            Tls::load(
                &cfg(Some(state.join("missing.pem")), Some(k.clone())),
                &state
            ),
            Err(TlsError::File { .. })
        ));
        // A real certificate with a key that is not its own.
        let (a, b) = (dir("a"), dir("b"));
        Tls::load(&cfg(None, None), &a).unwrap();
        Tls::load(&cfg(None, None), &b).unwrap();
        let mismatched = cfg(Some(a.join("tls/cert.pem")), Some(b.join("tls/key.pem")));
        assert!(matches!(
            Tls::load(&mismatched, &state),
            Err(TlsError::Rustls(_))
        ));
        for d in [a, b] {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_dir_all(&state);
    }
}
