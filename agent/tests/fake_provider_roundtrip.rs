//! The fake provider (`tests/support/fake_provider.rs`) speaks what the dialect decoders
//! decode: each dialect's request body goes out over a raw HTTP/1.1 connection, and the
//! de-chunked answer goes through `SseParser` and the dialect's `Decoder`.

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;

use std::time::Duration;

use fake_provider::{Dialect, FakeProvider, Reply, INPUT_TOKENS, OUTPUT_TOKENS};
use pincer_agent::provider::{Api, StreamError, StreamEvent, ToolSpec, TurnRequest};
use pincer_agent::sse::SseParser;
use pincer_agent::transcript::{Message, StopReason, Usage};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ALL: [(Dialect, Api); 3] = [
    (Dialect::Completions, Api::OpenAiCompletions),
    (Dialect::Responses, Api::OpenAiResponses),
    (Dialect::Anthropic, Api::AnthropicMessages),
];

fn request_body(api: Api) -> Value {
    let messages = vec![Message::User {
        text: "hello".into(),
        images: vec![],
        timestamp: 1,
        run_id: None,
    }];
    let tools = vec![ToolSpec {
        name: "nodes".into(),
        description: "Reach nodes".into(),
        parameters: json!({"type": "object", "properties": {}}),
    }];
    api.body(&TurnRequest {
        model: "fake-model",
        system: "You are a test.",
        messages: &messages,
        tools: &tools,
    })
}

/// A raw HTTP/1.1 exchange: the response head, then its body chunk by chunk.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
    eof: bool,
}

impl Conn {
    async fn post(fake: &FakeProvider, api: Api, body: &[u8], extra: &str) -> Conn {
        let base = fake.base_url();
        let prefix = base.trim_start_matches(&format!("http://{}", fake.addr()));
        let path = format!("{prefix}{}", api.path());
        let mut sock = TcpStream::connect(fake.addr()).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nAuthorization: Bearer k\r\n{extra}\r\n",
            fake.addr()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(body).await.unwrap();
        let mut conn = Conn {
            sock,
            buf: Vec::new(),
            status: 0,
            headers: Vec::new(),
            chunked: false,
            eof: false,
        };
        let end = loop {
            if let Some(i) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(conn.fill().await, "no response head");
        };
        let head = String::from_utf8(conn.buf[..end].to_vec()).unwrap();
        conn.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        conn.status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for l in lines {
            let (k, v) = l.split_once(':').unwrap();
            conn.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        conn.chunked = conn.header("transfer-encoding") == Some("chunked");
        conn
    }

    async fn send(fake: &FakeProvider, api: Api, body: &Value) -> Conn {
        let body = body.to_string();
        let extra = format!("content-length: {}\r\n", body.len());
        Conn::post(fake, api, body.as_bytes(), &extra).await
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    async fn fill(&mut self) -> bool {
        let mut b = [0u8; 4096];
        let n = self.sock.read(&mut b).await.unwrap_or(0);
        self.eof |= n == 0;
        self.buf.extend_from_slice(&b[..n]);
        n > 0
    }

    /// The next body chunk (None at the end of the body).
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        if !self.chunked {
            while self.fill().await {}
            return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
        }
        let line_end = loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let size = std::str::from_utf8(&self.buf[..line_end]).unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        while self.buf.len() < line_end + 2 + size + 2 {
            if !self.fill().await {
                return None;
            }
        }
        let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
        assert_eq!(&self.buf[line_end + 2 + size..line_end + 4 + size], b"\r\n");
        self.buf.drain(..line_end + 4 + size);
        (size > 0).then_some(data)
    }

    async fn body(&mut self) -> String {
        let mut all = Vec::new();
        while let Some(c) = self.chunk().await {
            all.extend(c);
        }
        String::from_utf8(all).unwrap()
    }
}

/// Feeds the body through the SSE parser and `api`'s decoder, to its end.
async fn decode(api: Api, conn: &mut Conn) -> (Vec<StreamEvent>, Result<(), StreamError>) {
    let mut parser = SseParser::new(1 << 20);
    let mut decoder = api.decoder();
    let mut out = Vec::new();
    while let Some(chunk) = conn.chunk().await {
        for e in parser.feed(&chunk).unwrap() {
            match decoder.feed(&e) {
                Ok(evs) => out.extend(evs),
                Err(err) => return (out, Err(err)),
            }
        }
    }
    match decoder.finish() {
        Ok(evs) => {
            out.extend(evs);
            (out, Ok(()))
        }
        Err(err) => (out, Err(err)),
    }
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn last_usage(events: &[StreamEvent]) -> Option<Usage> {
    events.iter().rev().find_map(|e| match e {
        StreamEvent::Usage(u) => Some(*u),
        _ => None,
    })
}

#[tokio::test]
async fn text_streams_decode_in_every_dialect() {
    for (dialect, api) in ALL {
        let fake = FakeProvider::start(dialect).await;
        let chunks = vec!["Hel".to_owned(), "lo, ".to_owned(), "wörld".to_owned()];
        fake.push(Reply::Text {
            chunks,
            delay_ms: 5,
        });
        let body = request_body(api);
        let mut conn = Conn::send(&fake, api, &body).await;
        assert_eq!(conn.status, 200);
        assert_eq!(conn.header("content-type"), Some("text/event-stream"));
        assert!(conn.chunked, "{dialect:?} streams chunked");
        let (events, end) = decode(api, &mut conn).await;
        assert_eq!(end, Ok(()), "{dialect:?}: {events:?}");
        assert_eq!(text_of(&events), "Hello, wörld", "{dialect:?}");
        let usage = Usage {
            input: INPUT_TOKENS,
            output: OUTPUT_TOKENS,
        };
        assert_eq!(last_usage(&events), Some(usage), "{dialect:?}");
        assert_eq!(events.last(), Some(&StreamEvent::Done(StopReason::Stop)));

        let seen = fake.wait_requests(1, Duration::from_secs(5)).await;
        assert_eq!(seen[0].path, dialect.path());
        assert_eq!(seen[0].body, body);
        assert_eq!(seen[0].header("authorization"), Some("Bearer k"));
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn tool_calls_decode_in_every_dialect() {
    for (dialect, api) in ALL {
        let fake = FakeProvider::start(dialect).await;
        let arguments = r#"{"action":"location_get","desiredAccuracy":"precise"}"#;
        fake.push(Reply::ToolCall {
            id: "call_1a6c0b9a".into(),
            name: "nodes".into(),
            arguments: arguments.into(),
            preamble: Some("Let me check.".into()),
        });
        let mut conn = Conn::send(&fake, api, &request_body(api)).await;
        let (events, end) = decode(api, &mut conn).await;
        assert_eq!(end, Ok(()), "{dialect:?}: {events:?}");
        assert_eq!(text_of(&events), "Let me check.");
        let calls: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 1, "{dialect:?}: {events:?}");
        // Responses ids are `<call_id>|<item_id>`.
        assert_eq!(calls[0].id.split('|').next(), Some("call_1a6c0b9a"));
        assert_eq!(calls[0].name, "nodes");
        assert_eq!(calls[0].arguments, arguments);
        assert_eq!(events.last(), Some(&StreamEvent::Done(StopReason::ToolUse)));
    }
}

#[tokio::test]
async fn status_malformed_truncated_and_default_replies() {
    for (dialect, api) in ALL {
        let fake = FakeProvider::start(dialect).await;
        fake.push(Reply::Status {
            code: 429,
            body: r#"{"error":{"message":"slow down"}}"#.into(),
            retry_after: Some(7),
        });
        fake.push(Reply::Malformed);
        fake.push(Reply::Truncated);
        let body = request_body(api);

        let mut conn = Conn::send(&fake, api, &body).await;
        assert_eq!(conn.status, 429);
        assert_eq!(conn.header("retry-after"), Some("7"));
        let err: Value = serde_json::from_str(&conn.body().await).unwrap();
        assert_eq!(err["error"]["message"], "slow down");

        let mut conn = Conn::send(&fake, api, &body).await;
        assert_eq!(conn.status, 200);
        let (_, end) = decode(api, &mut conn).await;
        assert!(
            matches!(end, Err(StreamError::Malformed { .. })),
            "{dialect:?}: {end:?}"
        );

        let mut conn = Conn::send(&fake, api, &body).await;
        let (events, end) = decode(api, &mut conn).await;
        assert_eq!(text_of(&events), "Hello", "{dialect:?}");
        assert_eq!(end, Err(StreamError::Truncated), "{dialect:?}");

        // The script is empty: "ok".
        let mut conn = Conn::send(&fake, api, &body).await;
        let (events, end) = decode(api, &mut conn).await;
        assert_eq!((text_of(&events).as_str(), end), ("ok", Ok(())));

        assert_eq!(fake.wait_requests(4, Duration::from_secs(5)).await.len(), 4);
        assert_eq!(fake.disconnects(), 0);
    }
}

#[tokio::test]
async fn a_stalled_stream_counts_the_client_disconnect() {
    for (dialect, api) in ALL {
        let fake = FakeProvider::start(dialect).await;
        fake.push(Reply::Stall);
        let mut conn = Conn::send(&fake, api, &request_body(api)).await;
        let mut parser = SseParser::new(1 << 20);
        let mut decoder = api.decoder();
        let mut text = String::new();
        while text.is_empty() {
            let chunk = tokio::time::timeout(Duration::from_secs(5), conn.chunk())
                .await
                .unwrap()
                .expect("the stall keeps the body open");
            for e in parser.feed(&chunk).unwrap() {
                text.push_str(&text_of(&decoder.feed(&e).unwrap()));
            }
        }
        assert_eq!(text, "Hel");
        // Nothing more comes.
        let more = tokio::time::timeout(Duration::from_millis(200), conn.chunk()).await;
        assert!(more.is_err(), "{dialect:?} sent more after the stall");
        drop(conn);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while fake.disconnects() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no disconnect seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.disconnects(), 1);
    }
}

#[tokio::test]
async fn chunked_request_bodies_are_refused_and_connections_run_concurrently() {
    let fake = FakeProvider::start(Dialect::Completions).await;
    let api = Api::OpenAiCompletions;
    let mut conn = Conn::post(
        &fake,
        api,
        b"2\r\n{}\r\n0\r\n\r\n",
        "transfer-encoding: chunked\r\n",
    )
    .await;
    assert_eq!(conn.status, 400);
    assert!(conn.body().await.contains("chunked"));
    assert!(fake.requests().is_empty());

    // A stalled stream does not hold up the others.
    fake.push(Reply::Stall);
    let stalled = Conn::send(&fake, api, &request_body(api)).await;
    let runs = (0..8).map(|_| async {
        let mut conn = Conn::send(&fake, api, &request_body(api)).await;
        decode(api, &mut conn).await
    });
    for (events, end) in futures_join(runs.collect()).await {
        assert_eq!((text_of(&events).as_str(), end), ("ok", Ok(())));
    }
    assert_eq!(fake.wait_requests(9, Duration::from_secs(5)).await.len(), 9);
    drop(stalled);
}

/// Runs the futures concurrently, results in order.
async fn futures_join<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    // Poll them together on this task: the fake serves each connection on its own task.
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}
