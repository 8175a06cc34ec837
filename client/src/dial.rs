//! Opening the socket: `ws://` over TCP, `wss://` over rustls (feature `tls`) with the Mozilla
//! roots or one pinned certificate; a cap on the frames the client accepts; extra upgrade
//! headers (for proxies in tests). Dialling is bounded by [`Dial::timeout`].

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{ClientError, Ws};

/// Largest frame a client accepts by default: the gateway's own cap on frames (25 MiB) plus the
/// JSON around an invoke's params. tungstenite alone would take 64 MiB.
pub const MAX_FRAME: usize = 26 * 1024 * 1024 + 64 * 1024;

/// How to open the socket.
#[derive(Debug, Clone)]
pub struct Dial {
    /// `ws://host:port[/path]` or `wss://…`.
    pub url: String,
    /// SHA-256 of the one certificate to trust (`wss://` only), any form
    /// [`normalize_pin`](crate::pin::normalize_pin) takes.
    pub pin: Option<String>,
    /// Extra HTTP headers on the upgrade request.
    pub headers: Vec<(String, String)>,
    /// Largest message and frame accepted from the gateway.
    pub max_frame: usize,
    /// Bound on TCP connect + TLS + upgrade.
    pub timeout: Duration,
}

impl Dial {
    /// `url` with no pin, no extra headers, [`MAX_FRAME`] and a 10 s timeout.
    pub fn new(url: impl Into<String>) -> Dial {
        Dial {
            url: url.into(),
            pin: None,
            headers: Vec::new(),
            max_frame: MAX_FRAME,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Opens the socket described by `d`.
pub async fn dial(d: &Dial) -> Result<Ws, ClientError> {
    let failed = |message: String| ClientError::Dial {
        url: d.url.clone(),
        message,
    };
    let mut request = d
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    for (k, v) in &d.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| failed(e.to_string()))?;
        let value = v
            .parse()
            .map_err(|_| failed(format!("bad header value for {k}")))?;
        request.headers_mut().insert(name, value);
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(d.max_frame);
    config.max_frame_size = Some(d.max_frame);
    let tls = d.url.starts_with("wss://");
    if d.pin.is_some() && !tls {
        return Err(ClientError::Config(format!(
            "a certificate pin needs a wss:// URL, not {}",
            d.url
        )));
    }
    #[cfg(feature = "tls")]
    let opened = {
        let connector = if tls {
            Some(crate::tls::connector(d.pin.as_deref()).map_err(ClientError::Config)?)
        } else {
            None
        };
        tokio::time::timeout(
            d.timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(config),
                true,
                connector,
            ),
        )
        .await
    };
    #[cfg(not(feature = "tls"))]
    let opened = {
        if tls {
            return Err(ClientError::Config(
                "this build has no TLS support (feature `tls`): use a ws:// URL".into(),
            ));
        }
        tokio::time::timeout(
            d.timeout,
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
    };
    match opened {
        Err(_) => Err(ClientError::Timeout {
            step: "opening the socket",
            after: d.timeout,
        }),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}
