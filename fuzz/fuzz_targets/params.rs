//! Typed params of every method the gateway decodes (`connect` among them): the first byte picks
//! the method, the rest is the params JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let methods: Vec<&str> = pincer_protocol::decode::typed_methods().collect();
    let method = methods[usize::from(pick) % methods.len()];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let raw = RawValue::from_string(text.to_owned()).ok();
    let _ = pincer_protocol::decode::decode_params(method, raw);
});
