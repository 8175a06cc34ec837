//! The command policy: which commands a node of a platform may run once it declares them
//! (the reference's platform defaults plus Pincer's HAL, then the config's allow / deny), which
//! of those need an operator's approval first, and which are never routed.

/// Commands every Linux node may run once declared (reference linux defaults + Pincer's HAL).
const LINUX_DEFAULTS: &[&str] = &[
    "system.run.prepare",
    "system.run",
    "system.which",
    "system.notify",
    "browser.proxy",
    "camera.list",
    "camera.snap",
    "camera.clip",
    "location.get",
    "screen.snapshot",
    "screen.record",
    "audio.list",
    "audio.record",
    "audio.play",
    "device.info",
    "device.status",
];

/// Commands for nodes of other platforms (reference defaults, exec excluded).
const OTHER_DEFAULTS: &[&str] = &[
    "canvas.present",
    "canvas.hide",
    "canvas.navigate",
    "canvas.eval",
    "canvas.snapshot",
    "canvas.a2ui.push",
    "canvas.a2ui.pushJSONL",
    "canvas.a2ui.reset",
    "camera.list",
    "location.get",
    "system.notify",
    "device.info",
    "device.status",
];

/// Commands that record, capture or execute: they work only after an operator approved the
/// node's surface once (`node.pair.approve`).
pub const DANGEROUS: &[&str] = &[
    "camera.snap",
    "camera.clip",
    "screen.record",
    "screen.snapshot",
    "audio.record",
    "system.run",
    "system.run.prepare",
    "contacts.add",
    "calendar.add",
    "reminders.add",
    "sms.send",
    "sms.search",
];

/// Never routed through `node.invoke`.
pub(crate) const REFUSED: &[&str] = &["system.execApprovals.get", "system.execApprovals.set"];

/// Whether `cmd` needs an operator's approval before it may run.
pub fn is_dangerous(cmd: &str) -> bool {
    DANGEROUS.contains(&cmd)
}

/// The gateway's allowlist for a node of `platform`.
pub fn allowlist(platform: &str, allow: &[String], deny: &[String]) -> Vec<String> {
    let p = platform.trim().to_ascii_lowercase();
    let base = if p.starts_with("linux") {
        LINUX_DEFAULTS
    } else {
        OTHER_DEFAULTS
    };
    let mut out: Vec<String> = base
        .iter()
        .map(|s| s.to_string())
        .chain(allow.iter().cloned())
        .collect();
    out.retain(|c| !deny.contains(c));
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_lists() {
        let l = allowlist("linux", &[], &["system.run".into()]);
        assert!(l.contains(&"camera.snap".to_string()));
        assert!(!l.contains(&"system.run".to_string()));
        let m = allowlist("macos", &["x.y".into()], &[]);
        assert!(m.contains(&"x.y".to_string()));
        assert!(!m.contains(&"system.run".to_string()));
        assert!(is_dangerous("camera.snap") && !is_dangerous("system.which"));
    }
}
