//! What board this is, for `client.deviceFamily` / `client.modelIdentifier`.

/// `(deviceFamily, modelIdentifier)`: from `/proc/device-tree/model` when present
/// (e.g. "Raspberry Pi 4 Model B Rev 1.4" → family "Raspberry Pi"), else "Linux".
pub fn identify() -> (String, Option<String>) {
    let model = std::fs::read("/proc/device-tree/model")
        .ok()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .trim()
                .to_owned()
        })
        .filter(|m| !m.is_empty());
    match model {
        Some(m) => (family_of(&m), Some(m)),
        None => ("Linux".into(), None),
    }
}

fn family_of(model: &str) -> String {
    if model.starts_with("Raspberry Pi") {
        "Raspberry Pi".into()
    } else {
        model
            .split_whitespace()
            .next()
            .unwrap_or("Linux")
            .to_owned()
    }
}

/// The machine's host name, the default display name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "pincer-node".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn families() {
        assert_eq!(
            super::family_of("Raspberry Pi 4 Model B Rev 1.4"),
            "Raspberry Pi"
        );
        assert_eq!(
            super::family_of("Raspberry Pi Zero 2 W Rev 1.0"),
            "Raspberry Pi"
        );
        assert_eq!(super::family_of("Pine64 RockPro64"), "Pine64");
    }
}
