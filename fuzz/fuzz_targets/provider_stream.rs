//! A provider's response stream, as the agent reads it: bytes → `sse::SseParser` (split at a
//! fuzzer-chosen point) → each dialect's `Decoder`. Nothing may panic, the SSE bound must
//! hold, and the same bytes must give the same events however they are split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pincer_agent::provider::Api;
use pincer_agent::sse::SseParser;

const MAX_EVENT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = usize::from(data[0]) * 256 + usize::from(data[1]);
    let body = &data[2..];
    let split = split.min(body.len());
    let whole = SseParser::new(MAX_EVENT).feed(body);
    let mut p = SseParser::new(MAX_EVENT);
    let parts = p.feed(&body[..split]).and_then(|mut a| {
        a.extend(p.feed(&body[split..])?);
        Ok(a)
    });
    match (&whole, &parts) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "splitting at {split} changed the events"),
        (Err(_), Err(_)) => {}
        _ => panic!("splitting at {split} changed whether the bound was hit"),
    }
    let Ok(events) = whole else { return };
    for e in &events {
        assert!(e.data.len() <= MAX_EVENT, "an event past the bound");
    }
    for api in [Api::OpenAiCompletions, Api::OpenAiResponses, Api::AnthropicMessages] {
        let mut d = api.decoder();
        for e in &events {
            if d.feed(e).is_err() {
                break;
            }
        }
        let _ = d.finish();
    }
});
