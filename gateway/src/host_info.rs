//! What the gateway says about the machines it runs on and reaches, for the official Control
//! UI's Systems view: `system.info` (this host: load, memory, disk, the gateway process) and
//! `environments.list` (this host, then every connected node), in the reference's shapes.
//! Everything comes from `/proc` and `statvfs` at the time of the call; nothing is cached.

use std::path::Path;

use pincer_protocol::error::ErrorShape;
use serde_json::{json, Value};

use crate::hub::Hub;
use crate::reply::Reply;

/// The methods of this module.
pub const METHODS: &[&str] = &["system.info", "environments.list"];

/// The answer to one of [`METHODS`].
pub fn answer(hub: &Hub, method: &str) -> Reply {
    let v = match method {
        "system.info" => system_info(hub),
        "environments.list" => environments(hub),
        other => return Err(ErrorShape::invalid(format!("unknown method: {other}"))),
    };
    Ok(v.to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Node.js's names for the CPU architectures a board has.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        other => other,
    }
}

/// `key : value` of the first line of `/proc/cpuinfo` named one of `keys`.
fn cpu_model(cpuinfo: &str) -> String {
    for key in ["model name", "Model", "Hardware", "cpu model", "uarch"] {
        let found = cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        });
        if let Some(v) = found.filter(|v| !v.is_empty()) {
            return v;
        }
    }
    "unknown".into()
}

/// A `/proc/meminfo` field, bytes.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    })
}

fn system_info(hub: &Hub) -> Value {
    let host = read("/proc/sys/kernel/hostname").trim().to_owned();
    let release = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let loadavg: Vec<f64> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    let mem = read("/proc/meminfo");
    let cpuinfo = read("/proc/cpuinfo");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rss = meminfo(&read("/proc/self/status"), "VmRSS").unwrap_or(0);
    let state_dir = &hub.config.state_dir;
    let (total, available) = pincer_os::disk_space(state_dir).unwrap_or((0, 0));
    let root = if state_dir.starts_with("/") { "/" } else { "." };
    let (root_total, root_available) = pincer_os::disk_space(Path::new(root)).unwrap_or((0, 0));
    json!({
        "machineName": host, "hostname": host, "platform": "linux", "release": release,
        "arch": arch(), "osLabel": format!("Linux {release}"), "port": hub.config.port,
        "pid": std::process::id(), "processInstanceId": hub.instance_id,
        "uptimeMs": hub.uptime_ms(), "cpuCount": cpus, "cpuModel": cpu_model(&cpuinfo),
        "loadAverage": loadavg, "memoryTotalBytes": meminfo(&mem, "MemTotal").unwrap_or(0),
        "memoryFreeBytes": meminfo(&mem, "MemAvailable").unwrap_or(0),
        "processMemory": { "rssBytes": rss },
        "disks": [{ "path": root, "totalBytes": root_total, "availableBytes": root_available }],
        "diskTotalBytes": total, "diskAvailableBytes": available,
        "diskPath": state_dir.display().to_string(),
        "implementation": crate::IMPLEMENTATION, "version": crate::VERSION,
    })
}

fn environments(hub: &Hub) -> Value {
    let mut list = vec![json!({
        "id": "gateway", "type": "local", "label": "Gateway local", "status": "available",
        "platform": "linux", "sessionHost": true, "trust": "persistent",
        "capabilities": ["agent.run", "sessions", "tools", "workspace"],
    })];
    for n in crate::methods::node_catalog(hub) {
        let seen = n.connected_at_ms;
        list.push(json!({
            "id": format!("node:{}", n.node_id), "type": "node",
            "label": n.display_name.clone().unwrap_or_else(|| n.node_id.clone()),
            "status": if n.connected { "available" } else { "offline" },
            "platform": n.platform.clone().unwrap_or_else(|| "linux".into()),
            "sessionHost": false, "lastConnectedAtMs": seen, "lastSeenAtMs": seen,
            "lastSeenReason": "connect", "trust": "persistent",
        }));
    }
    json!({ "environments": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_come_from_proc_texts() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n";
        assert_eq!(cpu_model(x86), "AMD EPYC");
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(cpu_model(pi), "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(cpu_model(""), "unknown");
        let mem = "MemTotal:        3884096 kB\nMemFree:  100 kB\nMemAvailable:    2000000 kB\n";
        assert_eq!(meminfo(mem, "MemTotal"), Some(3_884_096 * 1024));
        assert_eq!(meminfo(mem, "MemAvailable"), Some(2_000_000 * 1024));
        assert_eq!(meminfo(mem, "Swap"), None);
    }
}
