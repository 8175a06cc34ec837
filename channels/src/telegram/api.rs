//! The Telegram Bot API over pincer-agent's HTTP client: `POST {api_root}/bot<token>/<method>`
//! with a JSON body (multipart for a photo), the `{ok, result}` / `{ok:false, error_code,
//! description, parameters}` envelope decoded into [`ApiError`].
//!
//! The token stays in this module: no error, log line or `Debug` output carries it (errors name
//! the method; anything the HTTP layer says is scrubbed of the token first).

use std::time::Duration;

use pincer_agent::http::Client;
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest answer read from the Bot API (100 updates with captions fit many times over).
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Deadline of an ordinary call, connect to the last byte of the answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a Bot API call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: the token is wrong or revoked. The channel stops.
    #[error("Telegram refused the bot token (401 Unauthorized); check bot_token / token_file")]
    Unauthorized,
    /// 409: another `getUpdates` poller or a webhook holds the bot.
    #[error("another poller or a webhook is using this bot (409 Conflict): {0}")]
    Conflict(String),
    /// 429: flood control.
    #[error("{method}: rate limited by Telegram, retry after {retry_after} s")]
    RetryAfter {
        /// The call.
        method: String,
        /// Seconds to wait (`parameters.retry_after`).
        retry_after: u64,
    },
    /// Any other `ok:false` answer (400 bad request, 403 blocked by the user, …).
    #[error("{method}: Telegram answered {code}: {description}")]
    Refused {
        /// The call.
        method: String,
        /// `error_code`.
        code: u16,
        /// `description`.
        description: String,
    },
    /// No answer: connect error, reset, timeout, a body cut short.
    #[error("{method}: {why}")]
    Network {
        /// The call.
        method: String,
        /// What happened (token scrubbed).
        why: String,
    },
    /// An answer that is not the Bot API's envelope, or too large.
    #[error("{method}: not a Bot API answer: {why}")]
    Malformed {
        /// The call.
        method: String,
        /// What was wrong.
        why: String,
    },
}

impl ApiError {
    /// Worth trying again later (network trouble, flood control, a conflict, a 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Network { .. } | ApiError::RetryAfter { .. } | ApiError::Conflict(_) => true,
            ApiError::Refused { code, .. } => *code >= 500,
            ApiError::Unauthorized | ApiError::Malformed { .. } => false,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// One file part of a multipart call.
pub struct Upload<'a> {
    /// The form field (`photo`, `document`).
    pub field: &'a str,
    /// The file name Telegram shows.
    pub filename: &'a str,
    /// Its MIME type.
    pub mime: &'a str,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// A bot's connection to the Bot API.
#[derive(Clone)]
pub struct Api {
    http: Client,
    root: String,
    token: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("root", &self.root)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Api {
    /// A client for the bot `token` at `api_root` (`https://api.telegram.org`, a local Bot API
    /// server, or a test's fake).
    pub fn new(http: Client, api_root: &str, token: &str) -> Api {
        Api {
            http,
            root: api_root.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Calls `method` with JSON `params`; its `result`. `timeout` bounds the whole exchange.
    pub async fn call(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(params).unwrap_or_default();
        self.exchange(method, body, None, timeout).await
    }

    /// Calls `method` as `multipart/form-data`: the text `fields`, then `file`.
    pub async fn upload(
        &self,
        method: &str,
        fields: &[(&str, String)],
        file: &Upload<'_>,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let boundary = format!("pincer-{}", pincer_os::uuid_v4());
        let mut body = Vec::with_capacity(file.bytes.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                file.field, file.filename, file.mime
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.exchange(method, body, Some(ct), timeout).await
    }

    async fn exchange(
        &self,
        method: &str,
        body: Vec<u8>,
        content_type: Option<String>,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        match tokio::time::timeout(timeout, self.exchange_inner(method, body, content_type)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Network {
                method: method.to_owned(),
                why: format!("no complete answer within {} s", timeout.as_secs()),
            }),
        }
    }

    async fn exchange_inner(
        &self,
        method: &str,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/bot{}/{method}", self.root, self.token);
        let mut headers = vec![("accept", "application/json".to_owned())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let net = |why: String| ApiError::Network {
            method: method.to_owned(),
            why: self.scrub(&why),
        };
        // The outer deadline bounds the call; this one only has to be longer.
        let mut res = self
            .http
            .post(&url, &headers, body, Duration::from_secs(3600))
            .await
            .map_err(|e| net(e.to_string()))?;
        let mut answer = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| net(e.to_string()))? {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(ApiError::Malformed {
                    method: method.to_owned(),
                    why: format!("answer larger than {MAX_ANSWER} bytes"),
                });
            }
            answer.extend_from_slice(&chunk);
        }
        decode(method, res.status, &answer)
    }

    /// `text` with every occurrence of the token replaced by `<token>`.
    pub fn scrub(&self, text: &str) -> String {
        if self.token.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.token, "<token>")
    }

    /// `getMe`: the bot's own user.
    pub async fn get_me(&self) -> Result<Value, ApiError> {
        self.call("getMe", &json!({}), CALL_TIMEOUT).await
    }
}

/// Decodes an answer of `method` with HTTP `status`.
pub fn decode(method: &str, status: u16, answer: &[u8]) -> Result<Value, ApiError> {
    let env: Envelope = serde_json::from_slice(answer).map_err(|e| ApiError::Malformed {
        method: method.to_owned(),
        why: format!("HTTP {status}, {e}"),
    })?;
    if env.ok {
        return env.result.ok_or_else(|| ApiError::Malformed {
            method: method.to_owned(),
            why: "ok without a result".into(),
        });
    }
    let code = env.error_code.unwrap_or(status);
    let description: String = env
        .description
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    Err(match code {
        401 => ApiError::Unauthorized,
        409 => ApiError::Conflict(description),
        429 => ApiError::RetryAfter {
            method: method.to_owned(),
            retry_after: env
                .parameters
                .and_then(|p| p.retry_after)
                .unwrap_or(5)
                .clamp(1, 3600),
        },
        _ => ApiError::Refused {
            method: method.to_owned(),
            code,
            description,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_become_typed_errors() {
        assert_eq!(
            decode("getMe", 200, br#"{"ok":true,"result":{"id":7}}"#),
            Ok(json!({"id": 7}))
        );
        assert_eq!(
            decode(
                "getMe",
                401,
                br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            Err(ApiError::Unauthorized)
        );
        let e = decode(
            "sendMessage",
            429,
            br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        );
        assert_eq!(
            e,
            Err(ApiError::RetryAfter {
                method: "sendMessage".into(),
                retry_after: 3
            })
        );
        let e = decode("getUpdates", 409, br#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#);
        assert!(matches!(e, Err(ApiError::Conflict(ref d)) if d.contains("other getUpdates")));
        let e = decode(
            "sendMessage",
            400,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities"}"#,
        );
        assert!(matches!(e, Err(ApiError::Refused { code: 400, .. })));
        assert!(matches!(
            decode("getMe", 502, b"<html>Bad Gateway</html>"),
            Err(ApiError::Malformed { .. })
        ));
        assert!(matches!(
            decode("getMe", 200, br#"{"ok":true}"#),
            Err(ApiError::Malformed { .. })
        ));
    }

    #[test]
    fn the_token_is_scrubbed_and_never_debug_printed() {
        let api = Api::new(Client::new(), "http://127.0.0.1:9/", "123:SECRET");
        assert_eq!(
            api.scrub("bad URL http://x/bot123:SECRET/getMe"),
            "bad URL http://x/bot<token>/getMe"
        );
        assert!(!format!("{api:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn a_dead_server_is_a_network_error_without_the_token() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let api = Api::new(
            Client::new(),
            &format!("http://127.0.0.1:{port}"),
            "123:SECRET",
        );
        let e = api.get_me().await.unwrap_err();
        assert!(matches!(e, ApiError::Network { .. }), "{e:?}");
        assert!(e.is_transient());
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
