//! Device identity: Ed25519 keys, `deviceId`, and the signed connect payload (reference §2.3–2.4).
//!
//! * `publicKey` on the wire: base64url (no padding) of the raw 32-byte key.
//! * `deviceId`: lowercase hex SHA-256 of the raw 32-byte key.
//! * `signature`: base64url (no padding) of the 64-byte Ed25519 signature over the UTF-8 bytes
//!   of the pipe-joined payload string, v3 (preferred) or v2.
//!
//! Everything here builds `no_std`; payload strings are assembled in fixed-capacity buffers.

use core::fmt::{self, Write};
use sha2::{Digest, Sha256};

use crate::base64url;

/// Errors from identity operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The public key is not base64url of 32 bytes (or not a valid curve point).
    PublicKeyInvalid,
    /// The signature is not base64url of 64 bytes.
    SignatureEncoding,
    /// Neither the v3 nor the v2 payload verifies under the key.
    SignatureInvalid,
    /// The payload does not fit the fixed buffer (no_std builds only).
    PayloadTooLong,
    /// The operating system could not provide randomness for a new key.
    Randomness,
    /// A `deviceId` string is not 64 lowercase hex characters.
    DeviceIdInvalid,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PublicKeyInvalid => "device public key invalid",
            Self::SignatureEncoding => "device signature is not base64url of 64 bytes",
            Self::SignatureInvalid => "device signature invalid",
            Self::PayloadTooLong => "signature payload exceeds buffer",
            Self::Randomness => "no randomness available for key generation",
            Self::DeviceIdInvalid => "device id is not 64 hex characters",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IdentityError {}

/// A device's Ed25519 key pair. The private half never leaves the device.
#[derive(Clone)]
pub struct DeviceKeyPair {
    inner: ed25519_compact::KeyPair,
}

impl DeviceKeyPair {
    /// Builds the key pair from a 32-byte seed (the private key as stored on disk).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            inner: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)),
        }
    }

    /// Generates a new key pair from the operating system's randomness.
    #[cfg(feature = "std")]
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| IdentityError::Randomness)?;
        Ok(Self::from_seed(seed))
    }

    /// The 32-byte seed, for persisting the identity.
    pub fn seed(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.sk.seed()[..]);
        out
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.pk[..]);
        PublicKey(out)
    }

    /// Signs `msg` (deterministic Ed25519).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let sig = self.inner.sk.sign(msg, None);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig[..]);
        out
    }

    /// Signs `msg` and returns the base64url (no padding) text sent as `device.signature`.
    pub fn sign_base64url(&self, msg: &[u8]) -> heapless::String<86> {
        let sig = self.sign(msg);
        let mut buf = [0u8; 86];
        let mut out = heapless::String::new();
        if let Some(s) = base64url::encode_into(&sig, &mut buf) {
            let _ = out.push_str(s);
        }
        out
    }
}

impl fmt::Debug for DeviceKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyPair")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A raw 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses the wire form: base64url (padding and the standard alphabet tolerated).
    pub fn from_base64url(text: &str) -> Result<Self, IdentityError> {
        let raw = base64url::decode_array::<32>(text.trim())
            .map_err(|_| IdentityError::PublicKeyInvalid)?;
        // Reject encodings that are not points on the curve now, not at verification time.
        ed25519_compact::PublicKey::from_slice(&raw)
            .map_err(|_| IdentityError::PublicKeyInvalid)?;
        Ok(Self(raw))
    }

    /// Parses `device.publicKey` as the reference does: base64url of the raw key (what every
    /// official client sends), or a PEM SPKI block (`-----BEGIN PUBLIC KEY-----`, the form the
    /// reference's TS clients keep on disk), normalised to the raw key.
    pub fn from_wire(text: &str) -> Result<Self, IdentityError> {
        if !text.contains("BEGIN") {
            return Self::from_base64url(text);
        }
        // SPKI for Ed25519: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }.
        const SPKI_PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let mut body: heapless::String<96> = heapless::String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with("-----") {
                continue;
            }
            body.push_str(line)
                .map_err(|_| IdentityError::PublicKeyInvalid)?;
        }
        let der =
            base64url::decode_array::<44>(&body).map_err(|_| IdentityError::PublicKeyInvalid)?;
        if der[..12] != SPKI_PREFIX {
            return Err(IdentityError::PublicKeyInvalid);
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[12..]);
        ed25519_compact::PublicKey::from_slice(&raw)
            .map_err(|_| IdentityError::PublicKeyInvalid)?;
        Ok(Self(raw))
    }

    /// The wire form: base64url without padding (43 characters).
    pub fn to_base64url(&self) -> heapless::String<43> {
        let mut buf = [0u8; 43];
        let mut out = heapless::String::new();
        if let Some(s) = base64url::encode_into(&self.0, &mut buf) {
            let _ = out.push_str(s);
        }
        out
    }

    /// `deviceId`: SHA-256 of the raw key.
    pub fn device_id(&self) -> DeviceId {
        let digest = Sha256::digest(self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest);
        DeviceId(out)
    }

    /// Verifies a raw signature over `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(pk) = ed25519_compact::PublicKey::from_slice(&self.0) else {
            return false;
        };
        let Ok(sig) = ed25519_compact::Signature::from_slice(signature) else {
            return false;
        };
        pk.verify(msg, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

/// A device fingerprint: SHA-256 of the raw public key, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 32]);

impl DeviceId {
    /// The 64-character lowercase hex form used on the wire.
    pub fn to_hex(&self) -> heapless::String<64> {
        let mut s = heapless::String::new();
        let _ = write!(s, "{self}");
        s
    }

    /// Parses 64 hex digits (either case).
    pub fn parse_hex(text: &str) -> Result<Self, IdentityError> {
        let b = text.as_bytes();
        if b.len() != 64 {
            return Err(IdentityError::DeviceIdInvalid);
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or(IdentityError::DeviceIdInvalid)?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or(IdentityError::DeviceIdInvalid)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which payload generation a signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    /// `v2|…` with 9 fields.
    V2,
    /// `v3|…` with 11 fields (adds platform and device family).
    V3,
}

/// The fields that go into the signed connect payload.
///
/// `token` is `auth.token`, else `auth.deviceToken`, else `auth.bootstrapToken`, else empty
/// (see [`signature_token`]); the password is never signed. `scopes` are in the order sent.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a, S: AsRef<str>> {
    /// `device.id`: lowercase hex SHA-256 of the raw public key.
    pub device_id: &'a str,
    /// `client.id` (an enum value such as `node-host` or `cli`).
    pub client_id: &'a str,
    /// `client.mode` (`node`, `cli`, …).
    pub client_mode: &'a str,
    /// The role as the gateway resolves it (`operator` when `connect.role` is absent).
    pub role: &'a str,
    /// `connect.scopes` as sent, joined with `,` (empty when none).
    pub scopes: &'a [S],
    /// `device.signedAt`, ms since the Unix epoch, written as a decimal integer.
    pub signed_at_ms: u64,
    /// The signed token ([`signature_token`]); empty when none.
    pub token: &'a str,
    /// The socket's `connect.challenge` nonce.
    pub nonce: &'a str,
    /// `client.platform`; v3 only, trimmed and ASCII-lowercased.
    pub platform: &'a str,
    /// `client.deviceFamily` (empty when absent); v3 only, trimmed and ASCII-lowercased.
    pub device_family: &'a str,
}

/// Picks the token that is signed: `token` > `deviceToken` > `bootstrapToken` > empty.
pub fn signature_token<'a>(
    token: Option<&'a str>,
    device_token: Option<&'a str>,
    bootstrap_token: Option<&'a str>,
) -> &'a str {
    token.or(device_token).or(bootstrap_token).unwrap_or("")
}

/// Writes `text` trimmed and ASCII-lowercased (non-ASCII characters untouched), as v3 requires
/// for `platform` and `deviceFamily`.
fn write_ascii_lower<W: Write>(w: &mut W, text: &str) -> fmt::Result {
    for c in text.trim().chars() {
        w.write_char(c.to_ascii_lowercase())?;
    }
    Ok(())
}

impl<S: AsRef<str>> SignedFields<'_, S> {
    /// Writes the payload string of `version` into `w`.
    pub fn write_payload<W: Write>(&self, w: &mut W, version: PayloadVersion) -> fmt::Result {
        let tag = match version {
            PayloadVersion::V2 => "v2",
            PayloadVersion::V3 => "v3",
        };
        write!(
            w,
            "{tag}|{}|{}|{}|{}|",
            self.device_id, self.client_id, self.client_mode, self.role
        )?;
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                w.write_char(',')?;
            }
            w.write_str(s.as_ref())?;
        }
        write!(w, "|{}|{}|{}", self.signed_at_ms, self.token, self.nonce)?;
        if version == PayloadVersion::V3 {
            w.write_char('|')?;
            write_ascii_lower(w, self.platform)?;
            w.write_char('|')?;
            write_ascii_lower(w, self.device_family)?;
        }
        Ok(())
    }

    /// The payload in a fixed buffer of `N` bytes (for `no_std` callers).
    pub fn payload_in<const N: usize>(
        &self,
        version: PayloadVersion,
    ) -> Result<heapless::String<N>, IdentityError> {
        let mut s = heapless::String::new();
        self.write_payload(&mut s, version)
            .map_err(|_| IdentityError::PayloadTooLong)?;
        Ok(s)
    }

    /// The payload as an owned string.
    #[cfg(feature = "std")]
    pub fn payload(&self, version: PayloadVersion) -> String {
        let mut s = String::new();
        let _ = self.write_payload(&mut s, version);
        s
    }

    /// Signs the v3 payload; returns the base64url signature.
    #[cfg(feature = "std")]
    pub fn sign_v3(&self, key: &DeviceKeyPair) -> heapless::String<86> {
        key.sign_base64url(self.payload(PayloadVersion::V3).as_bytes())
    }

    /// Verifies `signature_b64` over the v3 payload, then the v2 payload.
    #[cfg(feature = "std")]
    pub fn verify(
        &self,
        key: &PublicKey,
        signature_b64: &str,
    ) -> Result<PayloadVersion, IdentityError> {
        let sig = base64url::decode_array::<64>(signature_b64.trim())
            .map_err(|_| IdentityError::SignatureEncoding)?;
        for v in [PayloadVersion::V3, PayloadVersion::V2] {
            if key.verify(self.payload(v).as_bytes(), &sig) {
                return Ok(v);
            }
        }
        Err(IdentityError::SignatureInvalid)
    }

    /// `no_std` variant of [`Self::verify`] with a fixed payload buffer of `N` bytes.
    pub fn verify_in<const N: usize>(
        &self,
        key: &PublicKey,
        signature_b64: &str,
    ) -> Result<PayloadVersion, IdentityError> {
        let sig = base64url::decode_array::<64>(signature_b64.trim())
            .map_err(|_| IdentityError::SignatureEncoding)?;
        for v in [PayloadVersion::V3, PayloadVersion::V2] {
            let payload = self.payload_in::<N>(v)?;
            if key.verify(payload.as_bytes(), &sig) {
                return Ok(v);
            }
        }
        Err(IdentityError::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the reference §2.4.
    const SEED: [u8; 32] = {
        let mut s = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            s[i] = i as u8;
            i += 1;
        }
        s
    };
    const PUBLIC_KEY: &str = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";
    const DEVICE_ID: &str = "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c";
    const PAYLOAD: &str = "v3|56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c|node-host|node|node||1737264000000|shared-token|00000000-0000-4000-8000-000000000000|linux|";
    const SIGNATURE: &str =
        "kwAdRIWJT3TgEsNAjX7r1BSB7Xmjg7dvJLtJkFetjy3tpoRpQECl0Nz7aYRRJUfa_FNd8jdln93iM2YQKMX9CA";

    fn fields() -> SignedFields<'static, &'static str> {
        SignedFields {
            device_id: DEVICE_ID,
            client_id: "node-host",
            client_mode: "node",
            role: "node",
            scopes: &[],
            signed_at_ms: 1_737_264_000_000,
            token: "shared-token",
            nonce: "00000000-0000-4000-8000-000000000000",
            platform: "linux",
            device_family: "",
        }
    }

    #[test]
    fn reference_test_vector() {
        let kp = DeviceKeyPair::from_seed(SEED);
        let pk = kp.public_key();
        assert_eq!(pk.to_base64url().as_str(), PUBLIC_KEY);
        assert_eq!(pk.device_id().to_hex().as_str(), DEVICE_ID);
        let payload = fields().payload_in::<512>(PayloadVersion::V3).unwrap();
        assert_eq!(payload.as_str(), PAYLOAD);
        assert_eq!(payload.matches('|').count(), 10);
        assert_eq!(kp.sign_base64url(payload.as_bytes()).as_str(), SIGNATURE);
        assert_eq!(
            fields().verify_in::<512>(&pk, SIGNATURE),
            Ok(PayloadVersion::V3)
        );
        assert_eq!(PublicKey::from_base64url(PUBLIC_KEY).unwrap(), pk);
        // The same key as the PEM SPKI block the reference's TS clients keep on disk.
        let mut der = [0u8; 44];
        der[..12].copy_from_slice(&[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ]);
        der[12..].copy_from_slice(&pk.0);
        let body = base64url::encode_standard(&der);
        let body = body.as_str();
        let mut pem: heapless::String<128> = heapless::String::new();
        pem.push_str("-----BEGIN PUBLIC KEY-----\n").unwrap();
        pem.push_str(body).unwrap();
        pem.push_str("\n-----END PUBLIC KEY-----\n").unwrap();
        assert_eq!(PublicKey::from_wire(&pem).unwrap(), pk);
        assert_eq!(PublicKey::from_wire(PUBLIC_KEY).unwrap(), pk);
        // another algorithm's SPKI, or a truncated block, is refused
        der[8] = 0x71;
        let body = base64url::encode_standard(&der);
        let body = body.as_str();
        let mut other: heapless::String<128> = heapless::String::new();
        other.push_str("-----BEGIN PUBLIC KEY-----\n").unwrap();
        other.push_str(body).unwrap();
        assert!(PublicKey::from_wire(&other).is_err());
        assert!(PublicKey::from_wire("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n").is_err());
        assert_eq!(DeviceId::parse_hex(DEVICE_ID).unwrap(), pk.device_id());
    }

    #[test]
    fn v2_payload_is_accepted_and_wrong_fields_are_not() {
        let kp = DeviceKeyPair::from_seed(SEED);
        let pk = kp.public_key();
        let v2 = fields().payload_in::<512>(PayloadVersion::V2).unwrap();
        assert_eq!(v2.matches('|').count(), 8);
        let sig = kp.sign_base64url(v2.as_bytes());
        assert_eq!(fields().verify_in::<512>(&pk, &sig), Ok(PayloadVersion::V2));
        let mut other = fields();
        other.nonce = "another-nonce";
        assert_eq!(
            other.verify_in::<512>(&pk, SIGNATURE),
            Err(IdentityError::SignatureInvalid)
        );
        let wrong_key = DeviceKeyPair::from_seed([7; 32]).public_key();
        assert_eq!(
            fields().verify_in::<512>(&wrong_key, SIGNATURE),
            Err(IdentityError::SignatureInvalid)
        );
        assert_eq!(
            fields().verify_in::<512>(&pk, "not base64!"),
            Err(IdentityError::SignatureEncoding)
        );
    }

    #[test]
    fn v3_lowercases_ascii_only_and_keeps_scope_order() {
        let f = SignedFields {
            scopes: &["operator.write", "operator.read"],
            platform: " Linux ",
            device_family: "RaspberryPİ",
            ..fields()
        };
        let p = f.payload_in::<512>(PayloadVersion::V3).unwrap();
        assert!(p.contains("|operator.write,operator.read|"));
        assert!(p.ends_with("|linux|raspberrypİ"));
    }

    #[test]
    fn token_precedence() {
        assert_eq!(signature_token(Some("t"), Some("d"), Some("b")), "t");
        assert_eq!(signature_token(None, Some("d"), Some("b")), "d");
        assert_eq!(signature_token(None, None, Some("b")), "b");
        assert_eq!(signature_token(None, None, None), "");
    }

    #[test]
    fn bad_public_keys_are_rejected() {
        assert_eq!(
            PublicKey::from_base64url("short"),
            Err(IdentityError::PublicKeyInvalid)
        );
        assert!(DeviceId::parse_hex("zz").is_err());
    }
}
