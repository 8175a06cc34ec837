//! Remote operation through an SSH tunnel: pincer-gateway bound to loopback on "pi" (a network
//! namespace running Debian's real `sshd`), `ssh -N -L` from this host, and the real OpenClaw
//! CLI through the tunnel with the gateway's token. The gateway is not reachable any other way.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::netns::{required, Netns};
use crate::support::openclaw::{free_port, json_of, reference, Proc, TOKEN};
use crate::support::{Gateway, BIN};

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ssh-keygen {}", path.display());
}

/// Waits (bounded, so that a broken setup fails instead of hanging) until `addr` accepts.
fn wait_for(addr: &str, what: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited ({st}) before {addr} accepted");
        }
        assert!(
            Instant::now() < until,
            "{what}: {addr} did not accept within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn openclaw_cli_reaches_a_loopback_gateway_through_an_ssh_tunnel() {
    let Some(r) = reference() else { return };
    let _one = crate::one_at_a_time();
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        assert!(
            !required(),
            "no /usr/sbin/sshd (openssh-server; scripts/test.sh installs it)"
        );
        eprintln!("skipping: no sshd");
        return;
    }
    let tag = std::process::id() % 50_000 + 7;
    let Some(ns) = Netns::create(tag) else {
        assert!(
            !required(),
            "network namespaces unavailable (need root and iproute2)"
        );
        eprintln!("skipping: network namespaces unavailable");
        return;
    };
    let pi = format!("10.254.{}.2", tag % 250);
    let dir = std::env::temp_dir().join(format!("pincer-ssh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");

    // "pi": pincer-gateway on its loopback only.
    let mut in_pi = Command::new("ip");
    in_pi.args(["netns", "exec", &ns.name, BIN]);
    let gw = Gateway::start_command(in_pi, &dir.join("gw"), TOKEN, &["--bind", "loopback"]);

    // "pi": sshd with a host key and one authorized client key of this test's own.
    let (host_key, client_key) = (dir.join("host_ed25519"), dir.join("client_ed25519"));
    keygen(&host_key);
    keygen(&client_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(dir.join("client_ed25519.pub"), &authorized).expect("authorized_keys");
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {pi}\nPort 22\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
             AllowTcpForwarding local\n",
            host_key.display(),
            authorized.display()
        ),
    )
    .expect("sshd_config");
    // sshd's privilege-separation directory.
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let mut sshd = Proc(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd"),
    );
    wait_for(&format!("{pi}:22"), "sshd", &mut sshd.0);

    // The gateway cannot be reached from here but through the tunnel.
    assert!(
        TcpStream::connect_timeout(
            &format!("{pi}:{}", gw.port).parse().expect("address"),
            Duration::from_secs(2)
        )
        .is_err(),
        "the loopback-bound gateway answered on the namespace's address"
    );

    // "laptop" (this host): ssh -N -L.
    let local = free_port();
    let mut ssh = Proc(
        Command::new("ssh")
            .args([
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .arg("-i")
            .arg(&client_key)
            .arg("-L")
            .arg(format!("127.0.0.1:{local}:127.0.0.1:{}", gw.port))
            .arg(format!("root@{pi}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh"),
    );
    wait_for(&format!("127.0.0.1:{local}"), "ssh -L", &mut ssh.0);

    let home = dir.join("openclaw-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let url = format!("ws://127.0.0.1:{local}");
    let health = json_of(&r.cli(&home, &url, &["gateway", "call", "health", "--json"]));
    assert_eq!(health["ok"], true, "{health}");
    let status = json_of(&r.cli(&home, &url, &["gateway", "call", "status", "--json"]));
    assert!(
        status["runtimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("pincer-gateway")),
        "{status}"
    );

    drop(ssh);
    drop(sshd);
    drop(gw);
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}
