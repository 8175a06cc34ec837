//! A second host on this machine for tests: a network namespace and a veth pair.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Whether the test run insists on namespaces (`PINCER_REQUIRE_NETNS=1`, set by
/// `scripts/test.sh` when running as root).
pub fn required() -> bool {
    std::env::var("PINCER_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// The host side address of the pair for `tag`.
pub fn host_ip(tag: u32) -> String {
    format!("10.254.{}.1", tag % 250)
}

/// A network namespace joined to the root namespace by a veth pair: host side
/// `10.254.<tag>.1/30` (`host_if`), namespace side `10.254.<tag>.2/30` (`peer_if`).
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub peer_if: String,
}

impl Netns {
    /// Creates it; `None` when this machine cannot (not root, no iproute2).
    pub fn create(tag: u32) -> Option<Netns> {
        let name = format!("pincer-t{tag}");
        let host_if = format!("pv{tag}a");
        let peer_if = format!("pv{tag}b");
        let net = format!("10.254.{}", tag % 250);
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer_if.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                peer_if.clone(),
                "netns".into(),
                name.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{net}.1/30"),
                "dev".into(),
                host_if.clone(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("{net}.2/30"),
                "dev".into(),
                peer_if.clone(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                peer_if.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        let ns = Netns {
            name,
            host_if,
            peer_if,
        };
        for s in steps {
            let ok = Command::new("ip")
                .args(&s)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if !ok {
                eprintln!("ip {} failed", s.join(" "));
                return None;
            }
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Netns {
    /// Takes the host side of the link down or up (a Wi-Fi drop, seen from both ends).
    pub fn link(&self, up: bool) {
        let _ = Command::new("ip")
            .args(["link", "set", &self.host_if, if up { "up" } else { "down" }])
            .status();
    }
}
