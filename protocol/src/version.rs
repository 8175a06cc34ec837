//! Protocol generations this implementation speaks.

/// Newest protocol generation (OpenClaw 2026.5 and later).
pub const PROTOCOL_V4: u32 = 4;
/// Previous generation (OpenClaw up to 2026.4); still accepted for every role.
pub const PROTOCOL_V3: u32 = 3;
/// Lowest version accepted.
pub const MIN_PROTOCOL: u32 = PROTOCOL_V3;
/// Highest version accepted.
pub const MAX_PROTOCOL: u32 = PROTOCOL_V4;

/// Picks the highest version in `min..=max` that we speak, or `None` when the ranges do not
/// overlap.
pub const fn negotiate(client_min: u32, client_max: u32) -> Option<u32> {
    let hi = if client_max < MAX_PROTOCOL {
        client_max
    } else {
        MAX_PROTOCOL
    };
    let lo = if client_min > MIN_PROTOCOL {
        client_min
    } else {
        MIN_PROTOCOL
    };
    if lo <= hi {
        Some(hi)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common_version() {
        assert_eq!(negotiate(3, 3), Some(3));
        assert_eq!(negotiate(4, 4), Some(4));
        assert_eq!(negotiate(3, 4), Some(4));
        assert_eq!(negotiate(1, 9), Some(4));
        assert_eq!(negotiate(5, 6), None);
        assert_eq!(negotiate(1, 2), None);
        assert_eq!(negotiate(4, 3), None);
    }
}
