//! The one HTTP client of the gateway: `POST` a JSON body and stream the response, over plain
//! TCP (a local llama.cpp / Ollama server) or rustls (feature `tls`, the Mozilla roots). One
//! connection per request (a turn is seconds long; a pool would save a handshake per model
//! call and keep sockets open on a board for nothing).
//!
//! hyper's HTTP/1 client does the protocol (chunked bodies, header parsing); this module adds
//! URL splitting, TLS and deadlines.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bytes of a response body read for an error message (the rest is dropped).
pub const MAX_ERROR_BODY: usize = 16 * 1024;

/// What can go wrong before a response body streams.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://` or `https://host[:port]/…`.
    #[error("bad URL {url}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (or this build has no TLS).
    #[error("TLS with {host}: {why}")]
    Tls {
        /// The host.
        host: String,
        /// What failed.
        why: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No response headers within the deadline.
    #[error("no response from {0} within the deadline")]
    Timeout(String),
}

/// A URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https`?
    pub tls: bool,
    /// The host name or address (no brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Splits `url`.
    pub fn parse(url: &str) -> Result<Target, HttpError> {
        let bad = |why| HttpError::BadUrl {
            url: url.to_owned(),
            why,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("only http:// and https:// are supported"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let default = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default,
                None => return Err(bad("junk after ]")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), default),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            tls,
            host,
            port,
            path: path.to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// A response whose body is still arriving.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `retry-after` in seconds, when the server sent one as a number.
    pub retry_after: Option<u64>,
    body: Incoming,
}

impl Response {
    /// The next piece of the body; `Ok(None)` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, hyper::Error> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                    // trailers: skipped
                }
            }
        }
    }

    /// The first [`MAX_ERROR_BODY`] bytes of the body as text (for an error message).
    pub async fn error_text(&mut self) -> String {
        let mut out = Vec::new();
        while out.len() < MAX_ERROR_BODY {
            match self.chunk().await {
                Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY - out.len())]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The HTTP client.
#[derive(Clone, Default)]
pub struct Client {
    #[cfg(feature = "tls")]
    tls: std::sync::Arc<std::sync::OnceLock<tokio_rustls::TlsConnector>>,
}

impl Client {
    /// A client (TLS is set up on first use).
    pub fn new() -> Client {
        Client::default()
    }

    /// `POST url` with `body` and `headers` (`content-type` defaults to JSON, `accept` to an
    /// event stream); the response once its headers arrived
    /// (within `timeout`, which covers connect, TLS and the wait for the status line).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let t = Target::parse(url)?;
        match tokio::time::timeout(timeout, self.exchange(&t, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(format!("{}:{}", t.host, t.port))),
        }
    }

    async fn exchange(
        &self,
        t: &Target,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let addr = format!("{}:{}", t.host, t.port);
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut req = hyper::Request::post(t.path.as_str())
            .header("host", t.host_header())
            .header("user-agent", concat!("pincer/", env!("CARGO_PKG_VERSION")));
        // JSON and an event stream unless the caller says otherwise (a multipart upload).
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !has("content-type") {
            req = req.header("content-type", "application/json");
        }
        if !has("accept") {
            req = req.header("accept", "text/event-stream");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let res = if t.tls {
            let tls = self.tls_stream(t, tcp).await?;
            send(tls, req).await?
        } else {
            send(tcp, req).await?
        };
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Response {
            status,
            retry_after,
            body: res.into_body(),
        })
    }

    #[cfg(feature = "tls")]
    async fn tls_stream(
        &self,
        t: &Target,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
        use rustls::pki_types::ServerName;
        let connector = self.tls.get_or_init(|| {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            match config {
                Ok(c) => tokio_rustls::TlsConnector::from(std::sync::Arc::new(c)),
                // ring supports the default versions; kept as an empty config's connector.
                Err(_) => tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )),
            }
        });
        let name = ServerName::try_from(t.host.clone()).map_err(|e| HttpError::Tls {
            host: t.host.clone(),
            why: e.to_string(),
        })?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Tls {
                host: t.host.clone(),
                why: e.to_string(),
            })
    }

    #[cfg(not(feature = "tls"))]
    async fn tls_stream(&self, t: &Target, _tcp: TcpStream) -> Result<TcpStream, HttpError> {
        Err(HttpError::Tls {
            host: t.host.clone(),
            why: "this build has no TLS (feature `tls`)".into(),
        })
    }
}

async fn send<S>(
    io: S,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "provider connection ended");
        }
    });
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:18800/v1/chat/completions").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (false, "127.0.0.1", 18800)
        );
        assert_eq!(t.path, "/v1/chat/completions");
        let t = Target::parse("https://api.openai.com/v1/responses").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header().as_str()),
            (true, 443, "api.openai.com")
        );
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(t.host_header(), "[::1]:8080");
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h/",
            "http://h:x/",
            "http://[::1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
