//! The gateway's first look at any text frame: the envelope decoder and the request decoder
//! (method + typed params), and the echo clip applied to their error messages.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pincer_protocol::frames::Frame::decode(text);
    if let Err(e) = pincer_protocol::decode::decode_request(text) {
        let _ = pincer_protocol::decode::clip_echo(format!("{e:?}"));
    }
});
