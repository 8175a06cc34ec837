//! Random tokens and ids, constant-time comparison, and token hashing.

use sha2::{Digest, Sha256};

/// Fills `buf` from the OS; falls back to a time-seeded mix only if the OS refuses (never on
/// Linux, where `getrandom(2)` blocks until seeded).
fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        let seed = Sha256::digest(format!(
            "{:?}{}",
            std::time::Instant::now(),
            crate::now_ms()
        ));
        for (i, b) in buf.iter_mut().enumerate() {
            *b = seed[i % 32];
        }
    }
}

/// A fresh token: 32 random bytes, base64url without padding (43 characters).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    fill(&mut b);
    pincer_protocol::base64url::encode(&b)
}

/// A random UUIDv4 string (nonces, connection ids, request ids): one implementation, in
/// pincer-os.
pub use pincer_os::uuid_v4;

/// Compares two secrets in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Hash first so that the comparison length does not depend on the secret's length.
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    let mut diff = 0u8;
    for (x, y) in ha.iter().zip(hb.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Hex SHA-256 of a token, the form in which device tokens are stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_uuids_are_well_formed_and_distinct() {
        let a = new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_token());
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"samf"));
        assert!(!ct_eq(b"same", b"same-longer"));
    }
}
