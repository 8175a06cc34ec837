//! A connected client for request/response use (the operator CLI, the bench, tests): one
//! request at a time, answered by id; events that arrive meanwhile are kept for
//! [`Session::next_event`], at most [`MAX_QUEUED_EVENTS`] of them (the oldest are dropped
//! first, and the count of dropped ones is logged).
//!
//! The node does not use it: it reads and writes side by side (`pincer-node`'s link).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::{encode_req, EventFrame, Frame};
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::{ClientError, Ws};

/// Events kept while waiting for a response.
pub const MAX_QUEUED_EVENTS: usize = 256;
/// The most JSON values a frame may hold to be decoded in a session (a `node.list` of 200
/// nodes holds a few thousand; a photo is one): a tree of this many is some tens of MB.
pub const MAX_VALUES: usize = 1 << 20;

/// How a session ended when the gateway closed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1005 when the frame had none, 1006 when the socket just ended).
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

/// A socket past `hello-ok`.
pub struct Session {
    ws: Ws,
    events: VecDeque<EventFrame>,
    dropped: u64,
    next_id: u64,
    /// Bound on each request's answer.
    pub timeout: Duration,
}

impl Session {
    /// Wraps a socket returned by [`crate::hello::connect`]; requests wait 10 s by default.
    pub fn new(ws: Ws) -> Session {
        Session {
            ws,
            events: VecDeque::new(),
            dropped: 0,
            next_id: 0,
            timeout: Duration::from_secs(10),
        }
    }

    /// Calls `method` with `params` and returns the response payload (`null` when it has
    /// none), or the gateway's error as [`ClientError::Method`].
    pub async fn request<P: Serialize + ?Sized>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = format!("{}-{}", self.next_id, pincer_os::uuid_v4());
        let text = encode_req(&id, method, params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode {method}: {e}")))?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match crate::hello::next_frame(&mut self.ws, left, "waiting for a response", MAX_VALUES)
                .await
            {
                Err(ClientError::Timeout { step, .. }) => {
                    return Err(ClientError::Timeout {
                        step,
                        after: self.timeout,
                    })
                }
                Err(e) => return Err(e),
                Ok(Frame::Res(r)) if r.id.as_str() == id => {
                    return if r.ok {
                        Ok(r.payload.unwrap_or(Value::Null))
                    } else {
                        Err(ClientError::Method(
                            r.error
                                .unwrap_or_else(|| ErrorShape::invalid("request failed")),
                        ))
                    };
                }
                Ok(Frame::Event(e)) => self.keep(e),
                Ok(_) => continue,
            }
        }
    }

    fn keep(&mut self, e: EventFrame) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "events not read in time were dropped"
                );
            }
        }
        self.events.push_back(e);
    }

    /// The next event (queued first), or how the gateway closed the session.
    pub async fn next_event(&mut self) -> Result<EventFrame, Closed> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if pincer_protocol::weight::json_values(t.as_str(), MAX_VALUES + 1) > MAX_VALUES
                    {
                        tracing::warn!(bytes = t.len(), "an event too large to decode was skipped");
                        continue;
                    }
                    if let Ok(Frame::Event(e)) = Frame::decode(t.as_str()) {
                        return Ok(e);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(c.map_or(
                        Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                        |c| Closed {
                            code: u16::from(c.code),
                            reason: c.reason.to_string(),
                        },
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Err(Closed {
                        code: 1006,
                        reason: String::new(),
                    })
                }
            }
        }
    }

    /// Closes the session (normal closure), waiting at most a second for the socket.
    pub async fn close(mut self) {
        let _ = crate::hello::close_within(&mut self.ws, 1000, "").await;
    }

    /// The socket, for clients that drive it themselves.
    pub fn into_inner(self) -> Ws {
        self.ws
    }
}
