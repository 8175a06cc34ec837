//! Invoke dispatch: `node.invoke.request` → the command → exactly one `node.invoke.result`.
//!
//! * params arrive as `paramsJSON` (string, null or absent) or, defensively, a `params` object;
//! * unknown command → `UNAVAILABLE` "command not supported"; bad params → `INVALID_REQUEST`;
//! * at most [`MAX_CONCURRENT`] run at once; beyond that → `UNAVAILABLE` "node busy";
//! * `timeoutMs` is honoured (`TIMEOUT`); `node.invoke.cancel` aborts a running command;
//! * a result larger than the gateway's `policy.maxPayload` → `PAYLOAD_TOO_LARGE`;
//! * results go into the link's byte-bounded [`Out`] without waiting; when it is full the
//!   gateway is not reading, the outbox is closed and the link reconnects (the gateway fails
//!   the connection's invokes itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pincer_os::outbox::{Outbox, Weighed};
use pincer_protocol::frames::encode_req_sized;
use pincer_protocol::methods::{NodeError, NodeInvokeRequest, NodeInvokeResultParams};
use pincer_protocol::text::NonEmpty;
use pincer_protocol::weight::json_values;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::commands::{CommandError, Registry, Reply};

/// Commands running at once.
pub const MAX_CONCURRENT: usize = 4;
/// The most JSON values an invoke's params may hold (`system.which` with thousands of names
/// holds thousands; audio and images are one string each): a bigger tree is never built, the
/// invoke is refused with `INVALID_REQUEST`. 65,536 values are a few MB as a tree.
pub const MAX_PARAM_VALUES: usize = 65_536;
/// Timeout when the request names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Routes invokes to commands and sends results into the link's outbound queue.
pub struct Dispatcher {
    registry: Registry,
    permits: Arc<Semaphore>,
    running: Arc<Mutex<HashMap<String, AbortHandle>>>,
    max_payload: AtomicUsize,
}

/// A request the node sends, with what the link needs to match the gateway's `res` to it.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The request id (`res.id` answers it).
    pub id: String,
    /// The method, for logs when the gateway refuses it.
    pub method: &'static str,
    /// The whole `req` frame.
    pub text: String,
}

impl Weighed for Outbound {
    fn bytes(&self) -> usize {
        self.text.len()
    }
}

/// The link's outbound queue, shared with the commands that answer into it.
pub type Out = Arc<Outbox<Outbound>>;

/// Queues `frame`; when the outbox is over budget the gateway has stopped reading: the outbox
/// is closed, which ends the link.
pub fn send(out: &Out, frame: Outbound) {
    if let Err(full) = out.push(frame) {
        tracing::warn!(%full, "the gateway is not reading; closing the link");
        out.close();
    }
}

/// `payloadJSON`: the reply's JSON text, escaped into the frame as it is written (never
/// built as a string of its own).
struct PayloadJson<'a>(&'a Reply);

impl Serialize for PayloadJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// The `node.invoke.result` request for `invoke_id`, encoded from the protocol's
/// [`NodeInvokeResultParams`] in one pass into a buffer sized for it up front.
pub fn result_frame(
    invoke_id: &str,
    node_id: &str,
    outcome: Result<Reply, CommandError>,
) -> Outbound {
    let (ok, reply, error) = match outcome {
        Ok(r) => (true, Some(r), None),
        Err(e) => (
            false,
            None,
            Some(NodeError {
                code: Some(e.code),
                message: Some(e.message),
            }),
        ),
    };
    let params = NodeInvokeResultParams {
        id: NonEmpty::from(invoke_id),
        node_id: NonEmpty::from(node_id),
        ok,
        payload: None,
        payload_json: reply.as_ref().map(PayloadJson),
        error,
    };
    let id = new_request_id();
    let room = reply.as_ref().map_or(0, Reply::text_len_hint);
    let text = encode_req_sized(&id, "node.invoke.result", &params, room).unwrap_or_else(|e| {
        // Only a map with non-string keys fails to encode: not in these params.
        tracing::error!(error = %e, "cannot encode node.invoke.result");
        String::new()
    });
    Outbound {
        id,
        method: "node.invoke.result",
        text,
    }
}

/// `PAYLOAD_TOO_LARGE` for a `bytes`-long result.
fn too_large(command: &str, bytes: usize, max_payload: usize) -> CommandError {
    CommandError::new(
        "PAYLOAD_TOO_LARGE",
        format!("{command} result is {bytes} bytes; the gateway accepts {max_payload}"),
    )
}

/// A fresh request id.
pub fn new_request_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("n-{}", u64::from_le_bytes(b))
}

/// The params of an invoke as a JSON value.
fn params_of(req: &NodeInvokeRequest) -> Result<Value, CommandError> {
    match (&req.params_json, &req.params) {
        (Some(text), _) if json_values(text, MAX_PARAM_VALUES + 1) > MAX_PARAM_VALUES => {
            Err(CommandError::invalid(format!(
                "paramsJSON holds more than {MAX_PARAM_VALUES} JSON values"
            )))
        }
        (Some(text), _) => serde_json::from_str(text)
            .map_err(|e| CommandError::invalid(format!("paramsJSON is not JSON: {e}"))),
        (None, Some(v)) => Ok(v.clone()),
        (None, None) => Ok(json!({})),
    }
    .map(|v| if v.is_null() { json!({}) } else { v })
}

impl Dispatcher {
    /// Serves the commands of `registry`; results capped at 25 MiB until the gateway's
    /// `policy.maxPayload` is known.
    pub fn new(registry: Registry) -> Dispatcher {
        Dispatcher {
            registry,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            running: Arc::new(Mutex::new(HashMap::new())),
            max_payload: AtomicUsize::new(25 * 1024 * 1024),
        }
    }

    /// Adopts the gateway's `policy.maxPayload`.
    pub fn set_max_payload(&self, bytes: usize) {
        self.max_payload.store(bytes, Ordering::Relaxed);
    }

    /// The commands served (declared in `connect`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts serving `req`; its one `node.invoke.result` goes to `out`.
    pub fn dispatch(&self, req: NodeInvokeRequest, node_id: &str, out: &Out) {
        let reply_now = |outcome: Result<Reply, CommandError>| {
            send(out, result_frame(&req.id, node_id, outcome));
        };
        let Some(cmd) = self.registry.get(&req.command) else {
            reply_now(Err(CommandError::unavailable("command not supported")));
            return;
        };
        let params = match params_of(&req) {
            Ok(p) => p,
            Err(e) => return reply_now(Err(e)),
        };
        // Held until the task is registered, so a command that finishes at once still finds
        // (and removes) its own entry.
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.contains_key(&req.id) {
            tracing::warn!(id = %req.id, "ignoring a repeated node.invoke.request (already running)");
            return;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            drop(running);
            reply_now(Err(CommandError::unavailable(format!(
                "node busy: {MAX_CONCURRENT} commands already running"
            ))));
            return;
        };
        let timeout = Duration::from_millis(req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1));
        let max_payload = self.max_payload.load(Ordering::Relaxed);
        let (invoke_id, node_id, command) =
            (req.id.clone(), node_id.to_owned(), req.command.clone());
        let registry = self.running.clone();
        let out = out.clone();
        let task = tokio::spawn(async move {
            let outcome = match tokio::time::timeout(timeout, cmd.run(params)).await {
                Err(_) => Err(CommandError::new(
                    "TIMEOUT",
                    format!("{command} timed out after {} ms", timeout.as_millis()),
                )),
                Ok(Err(e)) => Err(e),
                // A media result that cannot fit is refused before its frame is built.
                Ok(Ok(r)) => match r.text_len_hint() {
                    n if n > max_payload => Err(too_large(&command, n, max_payload)),
                    _ => Ok(r),
                },
            };
            if let Err(e) = &outcome {
                tracing::info!(%command, code = %e.code, "invoke failed: {}", e.message);
            }
            // The limit applies to the whole frame (payloadJSON is escaped inside it).
            let mut frame = result_frame(&invoke_id, &node_id, outcome);
            if frame.text.len() > max_payload {
                let e = too_large(&command, frame.text.len(), max_payload);
                tracing::info!(%command, code = %e.code, "invoke failed: {}", e.message);
                frame = result_frame(&invoke_id, &node_id, Err(e));
            }
            // Whoever removes the entry answers: this task, or `cancel`.
            let mine = registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&invoke_id)
                .is_some();
            drop(permit);
            if mine {
                send(&out, frame);
            }
        });
        running.insert(req.id.clone(), task.abort_handle());
    }

    /// A `node.invoke.request` that does not decode but names its id: answer
    /// `INVALID_REQUEST` rather than leave the operator waiting for the timeout.
    pub fn reject(&self, invoke_id: &str, node_id: &str, message: String, out: &Out) {
        send(
            out,
            result_frame(invoke_id, node_id, Err(CommandError::invalid(message))),
        );
    }

    /// `node.invoke.cancel`: stops the command (its child processes are killed on drop) and
    /// reports `CANCELLED`. False when it is not running (finished, or never started).
    pub fn cancel(&self, invoke_id: &str, node_id: &str, out: &Out) -> bool {
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(invoke_id);
        match handle {
            Some(h) => {
                // The aborted task drops its permit and its child process.
                h.abort();
                send(
                    out,
                    result_frame(
                        invoke_id,
                        node_id,
                        Err(CommandError::new("CANCELLED", "cancelled by the gateway")),
                    ),
                );
                true
            }
            None => false,
        }
    }

    /// Stops every running command without answering (the connection they belong to is gone,
    /// and the gateway has already failed them).
    pub fn abort_all(&self) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.len();
        for (_, h) in running.drain() {
            h.abort();
        }
        n
    }

    /// Commands in flight.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{Command, CommandFuture};

    struct Sleep(u64);
    impl Command for Sleep {
        fn run(&self, _: Value) -> CommandFuture {
            let ms = self.0;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({ "slept": ms }).into())
            })
        }
    }
    struct Echo;
    impl Command for Echo {
        fn run(&self, p: Value) -> CommandFuture {
            Box::pin(async move { Ok(p.into()) })
        }
    }
    struct Big;
    impl Command for Big {
        fn run(&self, _: Value) -> CommandFuture {
            Box::pin(async move { Ok(json!({ "base64": "A".repeat(4096) }).into()) })
        }
    }
    /// Every byte value, and fields that need escaping twice (in the JSON, then in payloadJSON).
    struct Photo;
    impl Command for Photo {
        fn run(&self, _: Value) -> CommandFuture {
            Box::pin(async move { Ok(photo()) })
        }
    }
    fn photo() -> Reply {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 256) as u8).collect();
        Reply::media(
            json!({ "format": "jpg", "note": "a \"quoted\" \\ path\n", "width": 640 }),
            bytes,
        )
    }

    fn req(
        id: &str,
        command: &str,
        params_json: Option<&str>,
        timeout_ms: Option<u64>,
    ) -> NodeInvokeRequest {
        NodeInvokeRequest {
            id: id.into(),
            node_id: "n".into(),
            command: command.into(),
            params_json: params_json.map(str::to_owned),
            params: None,
            timeout_ms,
            idempotency_key: None,
        }
    }

    fn outbox() -> Out {
        Arc::new(Outbox::new(16, 1 << 20))
    }

    async fn result(rx: &mut Out) -> Value {
        let f = tokio::time::timeout(Duration::from_secs(3), rx.next())
            .await
            .expect("a result")
            .expect("open");
        rx.sent();
        let v: Value = serde_json::from_str(&f.text).expect("json");
        assert_eq!(v["method"], "node.invoke.result");
        v["params"].clone()
    }

    fn dispatcher() -> Dispatcher {
        let mut r = Registry::default();
        r.add("t.sleep", Arc::new(Sleep(10_000)));
        r.add("t.echo", Arc::new(Echo));
        r.add("t.big", Arc::new(Big));
        r.add("t.photo", Arc::new(Photo));
        Dispatcher::new(r)
    }

    #[tokio::test]
    async fn every_invoke_gets_exactly_one_fitting_result() {
        let d = dispatcher();
        let mut rx = outbox();
        let tx = rx.clone();
        // paramsJSON as string, null, or absent.
        d.dispatch(req("1", "t.echo", Some(r#"{"a":1}"#), None), "n", &tx);
        assert_eq!(result(&mut rx).await["payloadJSON"], r#"{"a":1}"#);
        d.dispatch(req("2", "t.echo", None, None), "n", &tx);
        assert_eq!(result(&mut rx).await["payloadJSON"], "{}");
        d.dispatch(req("3", "t.echo", Some("null"), None), "n", &tx);
        assert_eq!(result(&mut rx).await["payloadJSON"], "{}");
        d.dispatch(req("4", "t.echo", Some("{not json"), None), "n", &tx);
        assert_eq!(result(&mut rx).await["error"]["code"], "INVALID_REQUEST");
        // Unknown command.
        d.dispatch(req("5", "camera.snap", None, None), "n", &tx);
        let r = result(&mut rx).await;
        assert_eq!(
            (
                r["ok"].as_bool(),
                r["error"]["code"].as_str(),
                r["error"]["message"].as_str()
            ),
            (
                Some(false),
                Some("UNAVAILABLE"),
                Some("command not supported")
            )
        );
        // Timeout.
        d.dispatch(req("6", "t.sleep", None, Some(100)), "n", &tx);
        let r = result(&mut rx).await;
        assert_eq!(
            (r["id"].as_str(), r["error"]["code"].as_str()),
            (Some("6"), Some("TIMEOUT"))
        );
        // A media result: its base64 written into the frame decodes to the bytes.
        d.dispatch(req("8", "t.photo", None, None), "n", &tx);
        let text = result(&mut rx).await["payloadJSON"]
            .as_str()
            .unwrap()
            .to_owned();
        let payload: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(payload, photo().to_value());
        let Reply::Media { bytes, .. } = photo() else {
            panic!("a media reply")
        };
        let b64 = payload["base64"].as_str().unwrap();
        assert_eq!(pincer_protocol::base64url::decode(b64).unwrap(), bytes);
        // Too large for the gateway: a JSON result, and a media one (refused before its
        // frame is built).
        d.set_max_payload(2048);
        d.dispatch(req("7", "t.big", None, None), "n", &tx);
        assert_eq!(result(&mut rx).await["error"]["code"], "PAYLOAD_TOO_LARGE");
        d.dispatch(req("9", "t.photo", None, None), "n", &tx);
        let r = result(&mut rx).await;
        assert_eq!(r["error"]["code"], "PAYLOAD_TOO_LARGE");
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("t.photo result is 13"));
    }

    #[tokio::test]
    async fn busy_and_cancel() {
        let d = dispatcher();
        let mut rx = outbox();
        let tx = rx.clone();
        for i in 0..MAX_CONCURRENT {
            d.dispatch(req(&format!("s{i}"), "t.sleep", None, None), "n", &tx);
        }
        tokio::task::yield_now().await;
        d.dispatch(req("extra", "t.sleep", None, None), "n", &tx);
        let r = result(&mut rx).await;
        assert_eq!(r["id"], "extra");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("node busy"),
            "{r}"
        );
        assert!(d.cancel("s0", "n", &tx));
        let r = result(&mut rx).await;
        assert_eq!(
            (r["id"].as_str(), r["error"]["code"].as_str()),
            (Some("s0"), Some("CANCELLED"))
        );
        assert_eq!(d.running(), MAX_CONCURRENT - 1);
        // The cancelled one's slot is free again.
        tokio::task::yield_now().await;
        d.dispatch(req("again", "t.echo", None, None), "n", &tx);
        assert_eq!(result(&mut rx).await["id"], "again");
        assert!(!d.cancel("nope", "n", &tx));
    }
}
