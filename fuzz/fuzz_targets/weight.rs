//! `protocol::weight::json_values`, the count every decoder of a peer's JSON checks before it
//! builds a tree: it must never panic, and for any text that does decode it must be an upper
//! bound on the values of the tree (otherwise a bound on it would not bound memory).
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn values(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(values).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(|v| 1 + values(v)).sum::<usize>(),
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let counted = pincer_protocol::weight::json_values(text, usize::MAX);
    // The bound stops where it is told to.
    assert!(pincer_protocol::weight::json_values(text, 8) <= counted.max(8));
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let actual = values(&v);
        assert!(actual <= counted, "{actual} values, counted {counted}: {text:?}");
    }
});
