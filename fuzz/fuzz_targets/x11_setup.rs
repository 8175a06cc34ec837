//! What an X server (or anything listening on its socket) answers to the connection setup, and
//! the Xauthority file the node reads the cookie from.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let screen = data.first().map_or(0, |b| u32::from(*b % 4));
    let _ = pincer_hal::screen::x11::setup_geometry(data, screen);
    let _ = pincer_hal::screen::x11::cookie_for(data, u32::from(screen), "pincer");
});
