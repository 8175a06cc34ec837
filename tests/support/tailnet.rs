//! A real tailnet for the remote tests: headscale (the self-hosted control server, with its
//! embedded DERP) on a bridge of our own, and one network namespace per host running the real
//! `tailscaled` (kernel TUN) joined with a pre-auth key. Traffic stays between the bridge and
//! the namespaces. The binaries come from `scripts/install-tailnet.sh` (pinned versions, built
//! once into a cache) through `PINCER_TAILSCALED`, `PINCER_TAILSCALE`, `PINCER_HEADSCALE`;
//! without them [`Tailnet::start`] gives `None` (the test skips) unless
//! `PINCER_REQUIRE_TAILNET=1`, when that is a failure.
//!
//! The one place that builds and runs a tailnet: every remote test uses it.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `PINCER_REQUIRE_TAILNET=1`: a missing tailnet is a failure, not a skip.
pub fn required() -> bool {
    std::env::var("PINCER_REQUIRE_TAILNET").is_ok_and(|v| v == "1")
}

struct Bins {
    tailscaled: PathBuf,
    tailscale: PathBuf,
    headscale: PathBuf,
}

fn bins() -> Option<Bins> {
    let get = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.exists())
    };
    Some(Bins {
        tailscaled: get("PINCER_TAILSCALED")?,
        tailscale: get("PINCER_TAILSCALE")?,
        headscale: get("PINCER_HEADSCALE")?,
    })
}

/// Kills the child on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits (bounded: a broken setup fails instead of hanging) until `f` gives a value.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `ok` (see [`wait_for`]).
fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    wait_for(what, secs, || ok().then_some(()))
}

/// The control server and the bridge; hosts join with [`Tailnet::host`].
pub struct Tailnet {
    bins: Bins,
    tag: u32,
    pub dir: PathBuf,
    bridge: String,
    /// The control server's address on the bridge (`10.253.<tag>.1`).
    pub control_ip: String,
    pub login_server: String,
    config: PathBuf,
    auth_key: String,
    hosts: u32,
    headscale: Option<Proc>,
    /// This machine's resolv.conf when the tailnet started ([`Tailnet::assert_host_dns_untouched`]).
    resolv: Option<Vec<u8>>,
}

/// One tailnet host: a namespace on the bridge running `tailscaled`.
pub struct Host {
    /// The namespace (`ip netns exec <ns> …` runs a program on this host).
    pub ns: String,
    /// Its LAN address on the bridge.
    pub lan_ip: String,
    /// Its tailnet IPv4 address (100.64.0.0/10).
    pub tailnet_ip: String,
    /// `tailscaled`'s LocalAPI socket.
    pub socket: PathBuf,
    veth: String,
    state: PathBuf,
    tailscaled: Option<Proc>,
}

impl Tailnet {
    /// The bridge `10.253.<tag>.0/24` and headscale on `.1`; `None` when the binaries or
    /// namespaces are missing (a failure when [`required`]).
    pub fn start(tag: u32) -> Option<Tailnet> {
        let Some(bins) = bins() else {
            assert!(
                !required(),
                "no tailnet binaries (scripts/install-tailnet.sh; PINCER_TAILSCALED/_TAILSCALE/_HEADSCALE)"
            );
            eprintln!("skipping: no tailnet binaries (scripts/install-tailnet.sh)");
            return None;
        };
        let tag = tag % 250;
        let bridge = format!("ptbr{tag}");
        let control_ip = format!("10.253.{tag}.1");
        let _ = ip(&["link", "del", &bridge]);
        if !(ip(&["link", "add", &bridge, "type", "bridge"])
            && ip(&["addr", "add", &format!("{control_ip}/24"), "dev", &bridge])
            && ip(&["link", "set", &bridge, "up"]))
        {
            assert!(
                !required(),
                "cannot make the bridge (need root and iproute2)"
            );
            eprintln!("skipping: cannot make a bridge");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("pincer-tailnet-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tailnet dir");
        let port = 18_000 + tag as u16;
        let login_server = format!("http://{control_ip}:{port}");
        let config = dir.join("headscale.yaml");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "server_url: {login_server}\nlisten_addr: {control_ip}:{port}\n\
                 metrics_listen_addr: 127.0.0.1:0\ngrpc_listen_addr: 127.0.0.1:0\n\
                 noise:\n  private_key_path: {d}/noise.key\n\
                 prefixes:\n  v4: 100.64.0.0/10\n  v6: fd7a:115c:a1e0::/48\n  allocation: sequential\n\
                 derp:\n  server:\n    enabled: true\n    region_id: 999\n    region_code: pincer\n\
                 \x20   region_name: pincer tests\n    stun_listen_addr: {control_ip}:{stun}\n\
                 \x20   private_key_path: {d}/derp.key\n    automatically_add_embedded_derp_region: true\n\
                 \x20   ipv4: {control_ip}\n  urls: []\n  paths: []\n  auto_update_enabled: false\n\
                 disable_check_updates: true\n\
                 database:\n  type: sqlite\n  sqlite:\n    path: {d}/db.sqlite\n\
                 log:\n  level: warn\npolicy:\n  mode: database\n\
                 dns:\n  magic_dns: false\n  override_local_dns: false\n  base_domain: pincer.ts.net\n\
                 unix_socket: {d}/headscale.sock\nunix_socket_permission: \"0770\"\n\
                 logtail:\n  enabled: false\n",
                stun = 13_000 + tag as u16,
            ),
        )
        .expect("headscale.yaml");
        let mut t = Tailnet {
            bins,
            tag,
            dir,
            bridge,
            control_ip,
            login_server,
            config,
            auth_key: String::new(),
            hosts: 1,
            headscale: None,
            resolv: std::fs::read("/etc/resolv.conf").ok(),
        };
        t.start_control();
        Some(t)
    }

    fn start_control(&mut self) {
        let log = std::fs::File::create(self.dir.join("headscale.log")).expect("log");
        let child = Command::new(&self.bins.headscale)
            .args(["-c"])
            .arg(&self.config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("headscale");
        self.headscale = Some(Proc(child));
        let addr = self.login_server.trim_start_matches("http://").to_owned();
        wait_until("headscale listening", 30, || {
            TcpStream::connect(&addr).is_ok()
        });
        if self.auth_key.is_empty() {
            let o = self.control(&["users", "create", "pincer"]);
            assert!(o.status.success(), "users create: {}", show(&o));
            let o = self.control(&[
                "preauthkeys",
                "create",
                "--user",
                "1",
                "--reusable",
                "--expiration",
                "2h",
            ]);
            assert!(o.status.success(), "preauthkeys: {}", show(&o));
            self.auth_key = String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
    }

    /// The namespaces share this machine's /etc: fails if a daemon in them rewrote its DNS
    /// (it would break every later download of the run).
    pub fn assert_host_dns_untouched(&self) {
        assert_eq!(
            std::fs::read("/etc/resolv.conf").ok(),
            self.resolv,
            "the host's resolv.conf changed"
        );
    }

    /// The reusable pre-auth key hosts join with (2 h).
    pub fn auth_key(&self) -> &str {
        &self.auth_key
    }

    /// The control server's nodes (`headscale nodes list -o json`).
    pub fn nodes(&self) -> serde_json::Value {
        let o = self.control(&["nodes", "list", "-o", "json"]);
        assert!(o.status.success(), "nodes list: {}", show(&o));
        serde_json::from_slice(&o.stdout).expect("nodes JSON")
    }

    /// `name`'s first tailnet address while the control server shows it online.
    pub fn online_address(&self, name: &str) -> Option<String> {
        self.nodes().as_array()?.iter().find_map(|n| {
            let named = n["given_name"] == name || n["name"] == name;
            (named && n["online"] == true)
                .then(|| n["ip_addresses"][0].as_str().map(str::to_owned))
                .flatten()
        })
    }

    /// The `tailscale` CLI binary (for a gateway that sets up Serve itself).
    pub fn tailscale_cli(&self) -> &Path {
        &self.bins.tailscale
    }

    /// Deletes `name`'s node from the control server (the device is removed from the
    /// tailnet; its peers drop it from their maps).
    pub fn delete_node(&self, name: &str) {
        let list = self.nodes();
        let id = list
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|n| n["given_name"] == name || n["name"] == name)
            })
            .and_then(|n| n["id"].as_u64().or_else(|| n["id"].as_str()?.parse().ok()))
            .unwrap_or_else(|| panic!("no node {name} in {list}"));
        let o = self.control(&["nodes", "delete", "-i", &id.to_string(), "--force"]);
        assert!(o.status.success(), "nodes delete: {}", show(&o));
    }

    /// `headscale -c <config> ARGS`.
    pub fn control(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.headscale)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("headscale CLI")
    }

    /// A new host `name`: a namespace on the bridge, `tailscaled` in it, joined to the tailnet.
    pub fn host(&mut self, name: &str) -> Host {
        self.hosts += 1;
        let n = self.hosts;
        let ns = format!("pt{}-{name}", self.tag);
        let veth = format!("pt{}h{n}", self.tag);
        let peer = format!("pt{}p{n}", self.tag);
        let lan_ip = format!("10.253.{}.{n}", self.tag);
        let _ = ip(&["netns", "del", &ns]);
        for args in [
            vec!["netns", "add", &ns],
            vec!["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &veth, "master", &self.bridge, "up"],
            vec!["link", "set", &peer, "netns", &ns],
        ] {
            assert!(ip(&args), "ip {args:?}");
        }
        let cidr = format!("{lan_ip}/24");
        for args in [
            vec!["-n", &ns, "addr", "add", &cidr, "dev", &peer],
            vec!["-n", &ns, "link", "set", &peer, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ] {
            assert!(ip(&args), "ip {args:?}");
        }
        // `ip netns exec` binds /etc/netns/<ns>/* over /etc: whatever a daemon in the namespace
        // writes to resolv.conf stays the namespace's.
        let etc = Path::new("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).expect("/etc/netns/<ns>");
        std::fs::write(etc.join("resolv.conf"), "# pincer test namespace\n").expect("resolv.conf");
        let state = self.dir.join(name);
        std::fs::create_dir_all(&state).expect("host state");
        let mut host = Host {
            ns,
            lan_ip,
            tailnet_ip: String::new(),
            socket: state.join("tailscaled.sock"),
            veth,
            state,
            tailscaled: None,
        };
        self.start_daemon(&mut host);
        self.up(&host, name);
        host.tailnet_ip = self.address_of(&host);
        host
    }

    /// Starts `tailscaled` in `host`'s namespace (again, after [`Host::kill_daemon`]).
    pub fn start_daemon(&self, host: &mut Host) {
        // A killed daemon leaves its socket behind: the new one's is waited for below.
        let _ = std::fs::remove_file(&host.socket);
        let log = std::fs::File::create(host.state.join("tailscaled.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(&self.bins.tailscaled)
            .arg("--tun=tailscale0")
            .arg(format!("--statedir={}", host.state.display()))
            .arg(format!("--socket={}", host.socket.display()))
            .arg("--port=41641")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tailscaled");
        host.tailscaled = Some(Proc(child));
        let sock = host.socket.clone();
        wait_until("tailscaled's socket", 30, || sock.exists());
    }

    fn up(&self, host: &Host, name: &str) {
        let o = self.cli(
            host,
            &[
                "up",
                &format!("--login-server={}", self.login_server),
                &format!("--authkey={}", self.auth_key),
                &format!("--hostname={name}"),
                // The namespaces share this machine's /etc: a daemon that took over DNS would
                // rewrite the host's resolv.conf (and break every later download).
                "--accept-dns=false",
                "--timeout=60s",
            ],
        );
        assert!(o.status.success(), "tailscale up on {name}: {}", show(&o));
    }

    fn address_of(&self, host: &Host) -> String {
        let mut addr = String::new();
        wait_until("a tailnet address", 30, || {
            let o = self.cli(host, &["ip", "-4"]);
            addr = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            o.status.success() && addr.starts_with("100.")
        });
        addr
    }

    /// `tailscale --socket <host's> ARGS`, run in the host's namespace.
    pub fn cli(&self, host: &Host, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(&self.bins.tailscale)
            .arg(format!("--socket={}", host.socket.display()))
            .args(args)
            .output()
            .expect("tailscale CLI")
    }

    /// Waits until `from` reaches `to` over the tailnet (`tailscale ping`: a path exists).
    pub fn wait_path(&self, from: &Host, to: &Host) {
        wait_until("a tailnet path", 60, || {
            self.cli(from, &["ping", "-c", "1", "--timeout=2s", &to.tailnet_ip])
                .status
                .success()
        });
    }
}

impl Host {
    /// Kills `tailscaled` (as a crash would); [`Tailnet::start_daemon`] brings it back.
    pub fn kill_daemon(&mut self) {
        self.tailscaled = None;
    }

    /// Lets programs on this host resolve `name` to `ip` (its own `/etc/netns/<ns>/hosts`,
    /// which `ip netns exec` binds over `/etc/hosts`): MagicDNS without taking over DNS.
    pub fn resolve(&self, name: &str, ip: &str) {
        let hosts = Path::new("/etc/netns").join(&self.ns).join("hosts");
        let mut text = std::fs::read_to_string(&hosts)
            .unwrap_or_else(|_| "127.0.0.1 localhost\n::1 localhost\n".into());
        text.push_str(&format!("{ip} {name}\n"));
        std::fs::write(&hosts, text).expect("hosts");
    }

    /// `ip netns exec <ns> PROGRAM`: a command that runs on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.tailscaled = None;
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.ns));
    }
}

impl Drop for Tailnet {
    fn drop(&mut self) {
        self.headscale = None;
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether `addr` accepts a TCP connection from inside `ns` (bounded at 10 s: a refusal
/// is immediate, a busy machine still connects well within it).
pub fn reachable_from(ns: &str, addr: &str) -> bool {
    let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "10", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{h}/{p}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
