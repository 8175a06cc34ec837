//! The WAV reader behind `audio.play`: any bytes an operator sends.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pincer_hal::audio::wav::decode(data);
});
