//! The one base64 codec of the workspace: base64url without padding (RFC 4648 §5) for public
//! keys, signatures and tokens, and standard padded base64 (§4) for media payloads (photos,
//! screenshots, WAVs).
//!
//! The decoders are tolerant the way the reference verifier is: either alphabet (`-_` or
//! `+/`), with or without trailing `=` padding.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Error from [`decode_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A byte outside both base64 alphabets.
    InvalidByte(u8),
    /// The text length cannot come from whole bytes.
    InvalidLength,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::InvalidByte(b) => write!(f, "invalid base64 byte 0x{b:02x}"),
            DecodeError::InvalidLength => f.write_str("base64 length cannot come from whole bytes"),
            DecodeError::BufferTooSmall => f.write_str("base64 output buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Length of the unpadded encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Encodes `input` into `out`, returning the written prefix as `&str`.
///
/// Returns `None` if `out` is shorter than [`encoded_len`]`(input.len())`.
pub fn encode_into<'a>(input: &[u8], out: &'a mut [u8]) -> Option<&'a str> {
    if out.len() < encoded_len(input.len()) {
        return None;
    }
    let o = encode_with(input, out, ALPHABET, false);
    core::str::from_utf8(&out[..o]).ok()
}

/// Length of the padded standard encoding of `n` bytes.
pub const fn padded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Writes the encoding of `input` with `alphabet` (and `=` padding when `pad`) into `out`,
/// which the caller sized; returns the bytes written.
fn encode_with(input: &[u8], out: &mut [u8], alphabet: &[u8; 64], pad: bool) -> usize {
    // Whole 3-byte groups first, without a branch or a bounds check per character (photos are
    // tens of KB), then the 1- or 2-byte tail.
    let whole = input.len() / 3;
    for (src, dst) in input.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
        let n = (u32::from(src[0]) << 16) | (u32::from(src[1]) << 8) | u32::from(src[2]);
        dst[0] = alphabet[(n >> 18) as usize & 63];
        dst[1] = alphabet[(n >> 12) as usize & 63];
        dst[2] = alphabet[(n >> 6) as usize & 63];
        dst[3] = alphabet[n as usize & 63];
    }
    let mut o = whole * 4;
    for chunk in input[whole * 3..].chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out[o] = alphabet[((n >> (18 - 6 * i)) & 63) as usize];
            } else if pad {
                out[o] = b'=';
            } else {
                break;
            }
            o += 1;
        }
    }
    o
}

/// Encodes `input` as standard padded base64 into `out`, returning the written prefix; `None`
/// if `out` is shorter than [`padded_len`]`(input.len())`. Pieces whose length is a multiple
/// of 3 concatenate into the encoding of the whole.
pub fn encode_standard_into<'a>(input: &[u8], out: &'a mut [u8]) -> Option<&'a str> {
    if out.len() < padded_len(input.len()) {
        return None;
    }
    let o = encode_with(input, out, STANDARD, true);
    core::str::from_utf8(&out[..o]).ok()
}

#[cfg(feature = "std")]
/// Standard padded base64 (media payloads: `camera.snap`, `screen.snapshot`, `audio.*`).
pub fn encode_standard(input: &[u8]) -> String {
    let mut buf = vec![0u8; padded_len(input.len())];
    let n = encode_with(input, &mut buf, STANDARD, true);
    buf.truncate(n);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(feature = "std")]
/// Decodes either alphabet, padded or not, skipping whitespace (as `base64` tools wrap lines).
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = clean.trim_end_matches('=');
    if trimmed.contains('=') {
        return Err(DecodeError::InvalidByte(b'='));
    }
    let mut out = vec![0u8; trimmed.len() * 3 / 4 + 1];
    let n = decode_into(trimmed, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(feature = "std")]
/// Encodes `input` as an owned string.
pub fn encode(input: &[u8]) -> String {
    let mut buf = vec![0u8; encoded_len(input.len())];
    encode_into(input, &mut buf)
        .map(str::to_owned)
        .unwrap_or_default()
}

fn value(c: u8) -> Result<u32, DecodeError> {
    Ok(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        _ => return Err(DecodeError::InvalidByte(c)),
    } as u32)
}

/// Decodes `text` into `out`, returning the number of bytes written.
pub fn decode_into(text: &str, out: &mut [u8]) -> Result<usize, DecodeError> {
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return Err(DecodeError::InvalidLength);
    }
    let need = bytes.len() * 3 / 4;
    if out.len() < need {
        return Err(DecodeError::BufferTooSmall);
    }
    let mut o = 0;
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out[o] = (n >> (16 - 8 * i)) as u8;
            o += 1;
        }
    }
    Ok(o)
}

/// Decodes exactly `N` bytes, or fails.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let mut buf = [0u8; N];
    let mut tmp = [0u8; 96];
    if N > tmp.len() {
        return Err(DecodeError::BufferTooSmall);
    }
    let n = decode_into(text, &mut tmp)?;
    if n != N {
        return Err(DecodeError::InvalidLength);
    }
    buf.copy_from_slice(&tmp[..N]);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: [u8; 70] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for len in 0..data.len() {
            let mut enc = [0u8; 100];
            let s = encode_into(&data[..len], &mut enc).unwrap();
            assert_eq!(s.len(), encoded_len(len));
            assert!(!s.contains('='));
            let mut dec = [0u8; 100];
            let n = decode_into(s, &mut dec).unwrap();
            assert_eq!(&dec[..n], &data[..len]);
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn standard_pieces_of_whole_groups_concatenate_into_the_whole() {
        let data: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in [0, 1, 2, 3, 4, 299, 300, 301, 1000] {
            let mut joined = std::string::String::new();
            let mut buf = [0u8; 400];
            for piece in data[..len].chunks(300) {
                joined.push_str(encode_standard_into(piece, &mut buf).unwrap());
            }
            assert_eq!(joined, encode_standard(&data[..len]), "{len} bytes");
        }
        assert_eq!(encode_standard_into(b"abcd", &mut [0u8; 7]), None);
    }

    #[cfg(feature = "std")]
    #[test]
    fn standard_padded_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_standard(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode_standard(b"\xfb\xff"), "+/8=");
        assert_eq!(decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(decode("Zm9v!").is_err());
        assert!(decode("Zg==Zg").is_err());
        assert!(decode("Z").is_err());
    }

    #[test]
    fn known_vectors_and_tolerance() {
        let mut out = [0u8; 16];
        assert_eq!(encode_into(b"\xfb\xff", &mut out), Some("-_8"));
        let mut dec = [0u8; 8];
        let n = decode_into("+/8=", &mut dec).unwrap();
        assert_eq!(&dec[..n], b"\xfb\xff");
        assert_eq!(decode_into("a", &mut dec), Err(DecodeError::InvalidLength));
        assert_eq!(
            decode_into("a*==", &mut dec),
            Err(DecodeError::InvalidByte(b'*'))
        );
    }
}
