//! Certificate pins: the SHA-256 of a gateway certificate's DER encoding, in the form
//! OpenClaw's `--tls-fingerprint` takes (`sha256:` prefixes and separators ignored).

use sha2::{Digest, Sha256};

/// Normalises a pin: drops a `sha256:` / `sha-256:` prefix and anything that is not hex;
/// `None` unless 64 hex digits remain.
pub fn normalize_pin(pin: &str) -> Option<[u8; 32]> {
    let p = pin.trim().to_ascii_lowercase();
    let p = p
        .strip_prefix("sha256:")
        .or_else(|| p.strip_prefix("sha-256:"))
        .unwrap_or(&p);
    let hex: Vec<u8> = p.bytes().filter(u8::is_ascii_hexdigit).collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of a certificate, as lowercase hex.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_are_normalised() {
        let hex = "AB".repeat(32);
        assert_eq!(super::normalize_pin(&hex), Some([0xab; 32]));
        assert_eq!(
            super::normalize_pin(&format!("sha256:{}", "ab:".repeat(32))),
            Some([0xab; 32])
        );
        assert_eq!(super::normalize_pin("sha256:abcd"), None);
    }
}
