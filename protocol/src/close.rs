//! WebSocket close codes and reasons used by the gateway and its clients (reference §1.7).

/// Normal close; also used for a handshake timeout or an unparseable first frame.
pub const NORMAL: u16 = 1000;
/// The client's protocol range excludes every version the gateway speaks.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Policy violation: bad first frame, failed auth, pairing required, slow consumer.
pub const POLICY_VIOLATION: u16 = 1008;
/// A text frame that is not UTF-8 (RFC 6455 §7.4.1).
pub const INVALID_PAYLOAD: u16 = 1007;
/// A frame exceeded the size allowed at this stage.
pub const TOO_BIG: u16 = 1009;
/// Gateway is restarting or stopping (sent after a `shutdown` event).
pub const SERVICE_RESTART: u16 = 1012;
/// Client watchdog: no frame for two tick intervals.
pub const TICK_TIMEOUT: u16 = 4000;
/// Credentials were rotated or revoked.
pub const AUTH_CHANGED: u16 = 4001;

/// Close reasons as the reference sends them.
pub mod reason {
    /// With [`PROTOCOL_ERROR`](super::PROTOCOL_ERROR): the `connect` range excludes every version we speak.
    pub const PROTOCOL_MISMATCH: &str = "protocol mismatch";
    /// With 1008: the first frame is not a valid request frame.
    pub const INVALID_FRAME: &str = "invalid request frame";
    /// With 1008: the first request's `method` is not `connect`.
    pub const FIRST_MUST_BE_CONNECT: &str = "invalid handshake: first request must be connect";
    /// With 1008: `connect.role` is neither `operator` nor `node`.
    pub const INVALID_ROLE: &str = "invalid role";
    /// With 1008: no `connect.device` where one is required (always for nodes).
    pub const DEVICE_IDENTITY_REQUIRED: &str = "device identity required";
    /// With 1008, after a `NOT_PAIRED` error: the device is not paired, or needs an upgrade approved.
    pub const PAIRING_REQUIRED: &str = "pairing required";
    /// With 1008: the connection's outbound buffer overflowed on an event that may not be dropped.
    pub const SLOW_CONSUMER: &str = "slow consumer";
    /// With [`TOO_BIG`](super::TOO_BIG): a frame over the pre-handshake cap (64 KiB) before `hello-ok`.
    pub const PREAUTH_TOO_LARGE: &str = "preauth payload too large";
    /// With [`SERVICE_RESTART`](super::SERVICE_RESTART): the gateway is stopping or restarting.
    pub const SERVICE_RESTART: &str = "service restart";
    /// With 1008: too many consecutive `unauthorized role:` refusals on one socket (10 in the reference).
    pub const REPEATED_UNAUTHORIZED: &str = "repeated unauthorized calls";
    /// With [`AUTH_CHANGED`](super::AUTH_CHANGED): the device was removed, or its token for this role rotated or revoked.
    pub const DEVICE_REMOVED: &str = "device removed";
}

/// Close reasons are limited to 123 bytes by RFC 6455; the reference truncates to 120.
pub const MAX_REASON_BYTES: usize = 120;

/// Truncates `reason` to at most [`MAX_REASON_BYTES`] on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    crate::clip(reason, MAX_REASON_BYTES)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = super::truncate_reason(&long);
        assert!(cut.len() <= super::MAX_REASON_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(super::truncate_reason("short"), "short");
    }
}
