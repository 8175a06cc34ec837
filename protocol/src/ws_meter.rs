//! The size of each WebSocket message as its frame headers declare it, from the raw bytes of a
//! socket, before anyone buffers the payload (RFC 6455 §5.2).
//!
//! A [`Meter`] is fed every byte read from a socket, in chunks of any size, and says when the
//! data frames of one message declare more than a cap. Control frames (opcode ≥ 8) do not count
//! towards a message. The meter does not validate frames: the WebSocket library does that; the
//! meter only reads the lengths, so a cap can be changed while the socket is open (a gateway
//! lowers it once it knows the peer's role) and a frame over it is refused at its header, not
//! after its payload has been assembled in memory.

/// A message declared more bytes than the cap allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap {
    /// The bytes the message's frames declared so far.
    pub declared: u64,
    /// The cap in force.
    pub cap: u64,
}

/// Reads frame headers from a byte stream and adds up the lengths of each message's frames.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame not yet seen.
    skip: u64,
    /// Bytes declared by the data frames of the message being received.
    message: u64,
}

impl Meter {
    /// A meter at the start of a stream (the next byte is a frame's first).
    pub const fn new() -> Self {
        Meter {
            header: [0; 14],
            have: 0,
            skip: 0,
            message: 0,
        }
    }

    /// Feeds `bytes` (the next bytes of the stream); `Err` as soon as a header makes the
    /// current message larger than `cap`. After an error the meter's state is unspecified: the
    /// socket is to be closed.
    pub fn feed(&mut self, mut bytes: &[u8], cap: u64) -> Result<(), OverCap> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = core::cmp::min(self.skip, bytes.len() as u64) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 || self.have < header_len(&self.header) {
                continue;
            }
            let len = payload_len(&self.header);
            let first = self.header[0];
            self.have = 0;
            self.skip = len;
            let opcode = first & 0x0f;
            if opcode >= 8 {
                continue;
            }
            if opcode != 0 {
                // Text or binary: a new message starts.
                self.message = 0;
            }
            self.message = self.message.saturating_add(len);
            if self.message > cap {
                return Err(OverCap {
                    declared: self.message,
                    cap,
                });
            }
        }
        Ok(())
    }
}

/// The length of the header that starts `h` (whose first two bytes are known).
fn header_len(h: &[u8; 14]) -> usize {
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + mask
}

/// The payload length a complete header declares.
fn payload_len(h: &[u8; 14]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        n => u64::from(n),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A frame as a client sends it (masked), with `len` payload bytes.
    fn frame(fin: bool, opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut f = std::vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if masked { 0x80 } else { 0 };
        if len < 126 {
            f.push(m | len as u8);
        } else if len <= 0xffff {
            f.push(m | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    fn feed_in_chunks(stream: &[u8], chunk: usize, cap: u64) -> Result<(), OverCap> {
        let mut m = Meter::new();
        for c in stream.chunks(chunk) {
            m.feed(c, cap)?;
        }
        Ok(())
    }

    #[test]
    fn messages_under_the_cap_pass_in_any_chunking() {
        let mut s = frame(true, 1, 100, true);
        s.extend(frame(true, 2, 70_000, true));
        s.extend(frame(false, 1, 30_000, true));
        s.extend(frame(true, 9, 125, true)); // a ping between fragments does not count
        s.extend(frame(true, 0, 30_000, true));
        s.extend(frame(true, 1, 0, false));
        for chunk in [1, 2, 3, 7, 14, 1000, s.len()] {
            assert_eq!(feed_in_chunks(&s, chunk, 70_000), Ok(()), "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_over_the_cap_is_refused_at_its_header() {
        let s = frame(true, 1, 70_001, true);
        let mut m = Meter::new();
        // The header alone (2 + 8 + 4 bytes) is enough.
        assert_eq!(
            m.feed(&s[..14], 70_000),
            Err(OverCap {
                declared: 70_001,
                cap: 70_000
            })
        );
    }

    #[test]
    fn fragments_add_up_and_a_new_message_starts_from_zero() {
        let mut s = frame(false, 1, 40_000, true);
        s.extend(frame(true, 0, 40_000, true));
        assert!(feed_in_chunks(&s, 5, 70_000).is_err());
        let mut s = frame(true, 1, 40_000, true);
        s.extend(frame(true, 1, 40_000, true));
        assert_eq!(feed_in_chunks(&s, 5, 70_000), Ok(()));
    }

    #[test]
    fn a_64_bit_length_is_refused_without_waiting_for_its_payload() {
        let mut h = std::vec![0x82u8, 0xff];
        h.extend_from_slice(&u64::MAX.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        let mut m = Meter::new();
        assert_eq!(
            m.feed(&h, 25 << 20),
            Err(OverCap {
                declared: u64::MAX,
                cap: 25 << 20
            })
        );
    }

    #[test]
    fn the_cap_can_change_between_feeds() {
        let s = frame(true, 1, 5_000, true);
        let mut m = Meter::new();
        assert_eq!(m.feed(&s, u64::MAX), Ok(()));
        assert!(m.feed(&s, 4_000).is_err());
    }
}
