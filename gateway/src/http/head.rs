//! A request head read off the socket: method, target and headers, bounded in bytes and in
//! header count, parsed by `httparse`.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Header lines accepted in one request (browsers send about 15).
pub const MAX_HEADERS: usize = 48;

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone)]
pub struct Head {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The request target as sent (`/assets/x.js?v=1`).
    pub target: String,
    /// HTTP/1.0 (`0`) or HTTP/1.1 (`1`).
    pub minor: u8,
    /// `(name, value)`, names lower-cased, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

/// Why no head could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The peer closed (or reset) before a whole head arrived.
    #[error("connection closed before a request head")]
    Closed,
    /// More than the allowed bytes without the blank line that ends a head.
    #[error("request head over {0} bytes")]
    TooLarge(usize),
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// Not HTTP/1.x.
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
}

impl Head {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// A WebSocket upgrade request (RFC 6455 §4.2.1: `Upgrade: websocket`).
    pub fn is_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }

    /// The path without query or fragment.
    pub fn path(&self) -> &str {
        let t = self.target.as_str();
        t.split(['?', '#']).next().unwrap_or(t)
    }

    /// Whether the client asks to keep the connection open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.minor >= 1 || self.has_token("connection", "keep-alive")
    }

    /// Whether a body follows the head (which GET and HEAD requests do not have here).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }
}

/// Reads one head into `buf` (which may already hold bytes) and parses it; the bytes after
/// it stay in `buf`. At most `max` bytes are read for the head.
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Head, HeadError> {
    loop {
        if !buf.is_empty() {
            if let Some((head, len)) = parse(buf)? {
                buf.drain(..len);
                return Ok(head);
            }
        }
        if buf.len() >= max {
            return Err(HeadError::TooLarge(max));
        }
        let mut chunk = [0u8; 2048];
        let want = chunk.len().min(max - buf.len());
        match io.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A complete head at the start of `bytes` and its length, `None` while partial.
fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Ok(Some((
            Head {
                method: req.method.unwrap_or("").to_owned(),
                target: req.path.unwrap_or("").to_owned(),
                minor: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            },
            len,
        ))),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8], max: usize) -> (Result<Head, HeadError>, Vec<u8>) {
        let mut io = bytes;
        let mut buf = Vec::new();
        let r = read(&mut io, &mut buf, max).await;
        (r, buf)
    }

    #[tokio::test]
    async fn a_head_and_what_follows_it() {
        let (h, rest) = read_all(
            b"GET /a/b.js?v=2 HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x80",
            4096,
        )
        .await;
        let h = h.expect("a head");
        assert_eq!(h.method, "GET");
        assert_eq!(h.path(), "/a/b.js");
        assert!(h.is_websocket());
        assert!(h.has_token("connection", "upgrade"));
        assert!(h.keep_alive());
        assert_eq!(rest, b"\x81\x80");
    }

    #[tokio::test]
    async fn oversized_crowded_and_broken_heads_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(5000));
        assert!(matches!(
            read_all(big.as_bytes(), 4096).await.0,
            Err(HeadError::TooLarge(4096))
        ));
        let many: String = (0..60).map(|i| format!("X{i}: y\r\n")).collect();
        let crowded = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            read_all(crowded.as_bytes(), 8192).await.0,
            Err(HeadError::TooManyHeaders)
        ));
        assert!(matches!(
            read_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 4096)
                .await
                .0,
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            read_all(b"GET / HTTP/1.1\r\nHost", 4096).await.0,
            Err(HeadError::Closed)
        ));
    }

    #[tokio::test]
    async fn http_1_0_and_connection_close_end_the_connection() {
        let (h, _) = read_all(b"GET / HTTP/1.0\r\n\r\n", 4096).await;
        assert!(!h.expect("a head").keep_alive());
        let (h, _) = read_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 4096).await;
        assert!(!h.expect("a head").keep_alive());
    }
}
