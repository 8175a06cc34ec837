//! `protocol::ws_meter::Meter`, which reads the frame headers of every byte a gateway's socket
//! receives: it must never panic, must give the same answer however the bytes are chunked, and
//! must agree with a plain whole-buffer reading of the same headers (RFC 6455 §5.2).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pincer_protocol::ws_meter::{Meter, OverCap};

/// The headers of `s` read in one pass: the first message over `cap`, if any.
fn reference(s: &[u8], cap: u64) -> Result<(), OverCap> {
    let mut at = 0usize;
    let mut message = 0u64;
    loop {
        if s.len() < at + 2 {
            return Ok(());
        }
        let (b0, b1) = (s[at], s[at + 1]);
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        let hlen = 2 + ext + mask;
        if s.len() < at + hlen {
            return Ok(());
        }
        let len = match ext {
            2 => u64::from(u16::from_be_bytes([s[at + 2], s[at + 3]])),
            8 => u64::from_be_bytes(s[at + 2..at + 10].try_into().unwrap_or([0; 8])),
            _ => u64::from(b1 & 0x7f),
        };
        let opcode = b0 & 0x0f;
        if opcode < 8 {
            if opcode != 0 {
                message = 0;
            }
            message = message.saturating_add(len);
            if message > cap {
                return Err(OverCap {
                    declared: message,
                    cap,
                });
            }
        }
        let next = ((at + hlen) as u64).saturating_add(len);
        if next >= s.len() as u64 {
            return Ok(());
        }
        at = next as usize;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let cap = u64::from(u16::from_be_bytes([data[0], data[1]]));
    let split = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let stream = &data[4..];
    let split = split.min(stream.len());
    let whole = Meter::new().feed(stream, cap);
    let mut m = Meter::new();
    let chunked = m
        .feed(&stream[..split], cap)
        .and_then(|()| m.feed(&stream[split..], cap));
    assert_eq!(whole, chunked, "chunking at {split} changed the answer");
    assert_eq!(whole, reference(stream, cap), "disagrees with the reference reading");
});
