//! Server-sent events (the WHATWG `text/event-stream` format) from a byte stream, with a
//! bound on how large one event may grow.

/// One event: its `event:` name (if any) and its `data:` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` field(s).
    pub data: String,
}

/// An event grew past the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a server-sent event exceeded {0} bytes")]
pub struct TooLarge(pub usize);

/// Splits a byte stream into events.
#[derive(Debug)]
pub struct SseParser {
    max_event: usize,
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A parser that refuses events (or lines) over `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        SseParser {
            max_event,
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Feeds `bytes`; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(e) = self.line_done(&line) {
                        out.push(e);
                    }
                    // A line's text can grow when it is decoded (U+FFFD for invalid bytes).
                    if self.data.len() > self.max_event {
                        return Err(TooLarge(self.max_event));
                    }
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() + self.data.len() > self.max_event {
                        return Err(TooLarge(self.max_event));
                    }
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_data && self.event.is_none() {
                return None;
            }
            self.has_data = false;
            return Some(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        if line[0] == b':' {
            return None; // a comment (keep-alive)
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        chunks.iter().flat_map(|c| p.feed(c).unwrap()).collect()
    }

    #[test]
    fn events_in_any_chunking_and_line_ending() {
        let s = b"event: a\ndata: {\"x\":1}\n\n: keep-alive\r\n\r\ndata: one\r\ndata:two\r\n\r\ndata: [DONE]\n\n";
        let want = vec![
            SseEvent {
                event: Some("a".into()),
                data: "{\"x\":1}".into(),
            },
            SseEvent {
                event: None,
                data: "one\ntwo".into(),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        ];
        assert_eq!(all(&[s]), want);
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(all(&bytes), want);
        let bytes: Vec<&[u8]> = s.chunks(7).collect();
        assert_eq!(all(&bytes), want);
    }

    #[test]
    fn an_endless_line_is_refused_not_buffered() {
        let mut p = SseParser::new(1024);
        assert!(p.feed(&[b'x'; 1000]).is_ok());
        assert_eq!(p.feed(&[b'x'; 100]), Err(TooLarge(1024)));
    }

    #[test]
    fn invalid_utf8_cannot_grow_an_event_past_the_bound() {
        // 1,000 invalid bytes decode to 3,000 bytes of U+FFFD.
        let mut p = SseParser::new(2048);
        let mut line = b"data: ".to_vec();
        line.extend([0xb8u8; 1000]);
        line.push(b'\n');
        assert_eq!(p.feed(&line), Err(TooLarge(2048)));
    }

    #[test]
    fn many_data_lines_count_towards_the_bound() {
        let mut p = SseParser::new(1024);
        let line = b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
        let mut r = Ok(vec![]);
        for _ in 0..40 {
            r = p.feed(line);
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(TooLarge(1024)));
    }
}
