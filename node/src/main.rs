//! `pincer-node`: thin binary over the library.
//!
//! The command line is parsed with `lexopt` and written out here (help text included) rather
//! than with clap's derive: on the Pi Zero's static armv6 build clap was ~150 KB of a node
//! that has to fit in 1.5 MB (docs/size.md), for four subcommands and a dozen options.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use pincer_client::identity::{Identity, IdentityFiles};
use pincer_node::commands::AVAILABLE_CAPS;
use pincer_node::config::{NodeConfig, Overrides};
use pincer_node::link::Node;

const ABOUT: &str = "Headless OpenClaw node for small Linux boards";

const USAGE: &str = "\
Usage: pincer-node <COMMAND> [OPTIONS]

Commands:
  run        Connect to the gateway and serve commands (reconnects by itself).
  identity   Print this node's device id.
  doctor     Check identity, capabilities and the gateway, and say what works.
  provision  Apply a board's pincer.toml (the SD image's first boot runs this): check all of
             it, write node.toml and the stored secrets, and print what the OS steps still do
             as key=value lines (nothing is written when the file has an error).
  help       Print this message, or a command's options (`pincer-node help run`).

Options:
  -h, --help     Print help
  -V, --version  Print version
";

const RUN_OPTIONS: &str = "\
Options:
      --gateway <URL>          ws://HOST:PORT or wss://HOST:PORT (default ws://127.0.0.1:18789).
      --token <TOKEN>          Shared gateway token (else PINCER_GATEWAY_TOKEN / OPENCLAW_GATEWAY_TOKEN).
      --setup-code <CODE>      One-time setup code from `pincer-gateway devices setup-code`.
      --caps <CAPS>            Capability classes to serve, e.g. `system` (comma separated).
      --name <NAME>            Display name (default: host name).
      --tls-fingerprint <SHA>  SHA-256 of the gateway's TLS certificate to pin (wss:// only).
      --gpsd <HOST:PORT>       gpsd address for `location.get` (default 127.0.0.1:2947).
      --state-dir <DIR>        Identity and device token (else PINCER_STATE_DIR, ~/.local/state/pincer-node).
      --config <FILE>          A node.toml to read (flags and environment override it).
  -h, --help                   Print help
";

const STATE_OPTIONS: &str = "\
Options:
      --state-dir <DIR>  Identity and device token (else PINCER_STATE_DIR, ~/.local/state/pincer-node).
      --config <FILE>    A node.toml to read (flags and environment override it).
  -h, --help             Print help
";

const PROVISION_OPTIONS: &str = "\
Usage: pincer-node provision [OPTIONS] <FILE>

Arguments:
  <FILE>  The pincer.toml to apply.

Options:
      --state-dir <DIR>       Where secrets for the OS steps are stored (the Tailscale auth key), 0700
                              [default: /var/lib/pincer-firstboot]
      --config-out <FILE>     The node.toml to write (mode 0640) [default: /etc/pincer/node.toml]
      --config-group <GROUP>  The group that may read node.toml (the node's), when it exists
                              [default: pincer]
      --scrubbed-out <FILE>   Also write pincer.toml without its secrets here (for the boot partition)
      --zoneinfo <DIR>        Time zones for the `timezone` check [default: /usr/share/zoneinfo]
  -h, --help                  Print help
";

enum Cmd {
    Run(RunArgs),
    Identity(StateArgs),
    Doctor(RunArgs),
    Provision(ProvisionArgs),
    /// `--help`, `--version`, `help`: printed on stdout, exit 0.
    Print(String),
}

/// A command line that cannot be run: printed with the usage on stderr, exit 2 (as clap did).
#[derive(Debug)]
struct UsageError(String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

fn value(p: &mut lexopt::Parser) -> Result<String, UsageError> {
    let v: OsString = p.value()?;
    v.into_string()
        .map_err(|v| UsageError(format!("invalid UTF-8 in {v:?}")))
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cmd, UsageError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let sub = match p.next()? {
        None => return Err(UsageError("a command is required".into())),
        Some(Short('h') | Long("help")) => return Ok(Cmd::Print(format!("{ABOUT}\n\n{USAGE}"))),
        Some(Short('V') | Long("version")) => {
            return Ok(Cmd::Print(format!(
                "pincer-node {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        }
        Some(Value(v)) => v.into_string().unwrap_or_default(),
        Some(other) => return Err(other.unexpected().into()),
    };
    match sub.as_str() {
        "run" | "doctor" => {
            let mut a = RunArgs::default();
            while let Some(arg) = p.next()? {
                match arg {
                    Long("gateway") => a.gateway = Some(value(&mut p)?),
                    Long("token") => a.token = Some(value(&mut p)?),
                    Long("setup-code") => a.setup_code = Some(value(&mut p)?),
                    Long("caps") => a.caps = Some(value(&mut p)?),
                    Long("name") => a.name = Some(value(&mut p)?),
                    Long("tls-fingerprint") => a.tls_fingerprint = Some(value(&mut p)?),
                    Long("gpsd") => a.gpsd = Some(value(&mut p)?),
                    Long("state-dir") => a.state.state_dir = Some(value(&mut p)?.into()),
                    Long("config") => a.state.config = Some(value(&mut p)?.into()),
                    Short('h') | Long("help") => {
                        return Ok(Cmd::Print(format!(
                            "Usage: pincer-node {sub} [OPTIONS]\n\n{RUN_OPTIONS}"
                        )))
                    }
                    other => return Err(other.unexpected().into()),
                }
            }
            if a.token.is_some() && a.setup_code.is_some() {
                return Err(UsageError(
                    "the argument '--token <TOKEN>' cannot be used with '--setup-code <CODE>'"
                        .into(),
                ));
            }
            Ok(if sub == "run" {
                Cmd::Run(a)
            } else {
                Cmd::Doctor(a)
            })
        }
        "identity" => {
            let mut s = StateArgs::default();
            while let Some(arg) = p.next()? {
                match arg {
                    Long("state-dir") => s.state_dir = Some(value(&mut p)?.into()),
                    Long("config") => s.config = Some(value(&mut p)?.into()),
                    Short('h') | Long("help") => {
                        return Ok(Cmd::Print(format!(
                            "Usage: pincer-node identity [OPTIONS]\n\n{STATE_OPTIONS}"
                        )))
                    }
                    other => return Err(other.unexpected().into()),
                }
            }
            Ok(Cmd::Identity(s))
        }
        "provision" => {
            let mut file = None;
            let mut a = ProvisionArgs {
                file: PathBuf::new(),
                state_dir: "/var/lib/pincer-firstboot".into(),
                config_out: "/etc/pincer/node.toml".into(),
                config_group: "pincer".into(),
                scrubbed_out: None,
                zoneinfo: "/usr/share/zoneinfo".into(),
            };
            while let Some(arg) = p.next()? {
                match arg {
                    Long("state-dir") => a.state_dir = value(&mut p)?.into(),
                    Long("config-out") => a.config_out = value(&mut p)?.into(),
                    Long("config-group") => a.config_group = value(&mut p)?,
                    Long("scrubbed-out") => a.scrubbed_out = Some(value(&mut p)?.into()),
                    Long("zoneinfo") => a.zoneinfo = value(&mut p)?.into(),
                    Short('h') | Long("help") => return Ok(Cmd::Print(PROVISION_OPTIONS.into())),
                    Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
                    other => return Err(other.unexpected().into()),
                }
            }
            a.file =
                file.ok_or_else(|| UsageError("provision needs the pincer.toml to apply".into()))?;
            Ok(Cmd::Provision(a))
        }
        "help" => Ok(Cmd::Print(match value_opt(&mut p)?.as_deref() {
            Some("run") | Some("doctor") => {
                format!("Usage: pincer-node run [OPTIONS]\n\n{RUN_OPTIONS}")
            }
            Some("identity") => format!("Usage: pincer-node identity [OPTIONS]\n\n{STATE_OPTIONS}"),
            Some("provision") => PROVISION_OPTIONS.into(),
            _ => format!("{ABOUT}\n\n{USAGE}"),
        })),
        other => Err(UsageError(format!("unrecognized subcommand '{other}'"))),
    }
}

/// The next plain argument, if any.
fn value_opt(p: &mut lexopt::Parser) -> Result<Option<String>, UsageError> {
    match p.next()? {
        Some(lexopt::Arg::Value(v)) => Ok(Some(v.to_string_lossy().into_owned())),
        Some(other) => Err(other.unexpected().into()),
        None => Ok(None),
    }
}

struct ProvisionArgs {
    file: PathBuf,
    state_dir: PathBuf,
    config_out: PathBuf,
    config_group: String,
    scrubbed_out: Option<PathBuf>,
    zoneinfo: PathBuf,
}

/// `provision`: the errors are for pincer-error.txt, so only the message, on stderr.
fn provision(a: ProvisionArgs) -> std::process::ExitCode {
    use pincer_node::provision::{provision, Checks, Options};
    let opts = Options {
        checks: Checks {
            available_caps: AVAILABLE_CAPS,
            zoneinfo: a.zoneinfo,
        },
        config_out: a.config_out,
        config_gid: pincer_os::group_id(&a.config_group),
        state_dir: a.state_dir,
        scrubbed_out: a.scrubbed_out,
        now_unix: pincer_node::now_ms() / 1000,
    };
    match provision(&a.file, &opts) {
        Ok(p) => {
            print!("{}", p.os_env());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Default)]
struct StateArgs {
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
}

#[derive(Clone, Default)]
struct RunArgs {
    gateway: Option<String>,
    token: Option<String>,
    setup_code: Option<String>,
    caps: Option<String>,
    name: Option<String>,
    tls_fingerprint: Option<String>,
    gpsd: Option<String>,
    state: StateArgs,
}

fn resolve(a: &RunArgs) -> anyhow::Result<NodeConfig> {
    Ok(NodeConfig::resolve(
        Overrides {
            gateway: a.gateway.clone(),
            token: a.token.clone(),
            setup_code: a.setup_code.clone(),
            caps: a.caps.clone(),
            name: a.name.clone(),
            state_dir: a.state.state_dir.clone(),
            tls_fingerprint: a.tls_fingerprint.clone(),
            gpsd: a.gpsd.clone(),
            config: a.state.config.clone(),
        },
        AVAILABLE_CAPS,
    )?)
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cmd = match parse(std::env::args_os().skip(1)) {
        Ok(Cmd::Print(text)) => {
            print!("{text}");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Ok(cmd) => cmd,
        Err(UsageError(e)) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return Ok(std::process::ExitCode::from(2));
        }
    };
    pincer_os::init_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        Cmd::Identity(s) => {
            let cfg = resolve(&RunArgs {
                state: s,
                ..Default::default()
            })?;
            let id = Identity::load_or_create(IdentityFiles::node(&cfg.state_dir))?;
            println!("{}", id.device_id);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Run(a) => {
            let cfg = resolve(&a)?;
            let node = Node::from_config(cfg).context("node identity")?;
            tracing::info!(device_id = %node.identity.device_id, gateway = %node.config.gateway, caps = ?node.config.caps, "starting");
            let systemd = pincer_os::notify::systemd();
            rt.block_on(async {
                // Ready once running: the node serves (and keeps reconnecting) by itself, so
                // an unreachable gateway is not a failed start.
                if let Some(n) = &systemd {
                    n.ready("running");
                    pincer_os::notify::spawn_watchdog(n.clone());
                }
                node.run(async {
                    pincer_os::shutdown_signal().await;
                    if let Some(n) = &systemd {
                        n.stopping();
                    }
                })
                .await
            });
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Doctor(a) => rt
            .block_on(doctor(a))
            .map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Provision(a) => Ok(provision(a)),
        Cmd::Print(_) => Ok(std::process::ExitCode::SUCCESS),
    }
}

async fn doctor(a: RunArgs) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    for check in pincer_node::doctor::report(&cfg).await {
        println!("{check}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn run_takes_both_option_spellings() {
        let Ok(Cmd::Run(a)) = parse(args(
            "run --gateway=wss://pi:18789 --setup-code ABC --caps camera,location --state-dir /s",
        )) else {
            panic!("run did not parse");
        };
        assert_eq!(a.gateway.as_deref(), Some("wss://pi:18789"));
        assert_eq!(a.setup_code.as_deref(), Some("ABC"));
        assert_eq!(a.caps.as_deref(), Some("camera,location"));
        assert_eq!(a.state.state_dir, Some(PathBuf::from("/s")));
    }

    #[test]
    fn mistakes_are_usage_errors_not_runs() {
        for line in [
            "",
            "run --token T --setup-code C",
            "run --gatway ws://x",
            "run --gateway",
            "serve",
            "identity extra",
            "provision",
        ] {
            assert!(parse(args(line)).is_err(), "`{line}` parsed");
        }
    }

    #[test]
    fn provision_defaults_are_the_images_paths() {
        let Ok(Cmd::Provision(a)) = parse(args("provision /boot/firmware/pincer.toml")) else {
            panic!("provision did not parse");
        };
        assert_eq!(a.file, PathBuf::from("/boot/firmware/pincer.toml"));
        assert_eq!(a.state_dir, PathBuf::from("/var/lib/pincer-firstboot"));
        assert_eq!(a.config_out, PathBuf::from("/etc/pincer/node.toml"));
        assert_eq!(a.config_group, "pincer");
        assert_eq!(a.zoneinfo, PathBuf::from("/usr/share/zoneinfo"));
        assert!(a.scrubbed_out.is_none());
        // As images/firstboot/pincer-firstboot calls it.
        let Ok(Cmd::Provision(a)) = parse(args(
            "provision /boot/firmware/pincer.toml --state-dir /var/lib/pincer-firstboot \
             --config-out /etc/pincer/node.toml --scrubbed-out /run/pincer-firstboot/scrubbed",
        )) else {
            panic!("the first boot's provision did not parse");
        };
        assert_eq!(a.file, PathBuf::from("/boot/firmware/pincer.toml"));
        assert_eq!(
            a.scrubbed_out,
            Some(PathBuf::from("/run/pincer-firstboot/scrubbed"))
        );
    }

    #[test]
    fn help_and_version_print() {
        let Ok(Cmd::Print(v)) = parse(args("--version")) else {
            panic!("--version");
        };
        assert_eq!(v, format!("pincer-node {}\n", env!("CARGO_PKG_VERSION")));
        for line in [
            "--help",
            "help",
            "run --help",
            "help provision",
            "identity -h",
        ] {
            assert!(matches!(parse(args(line)), Ok(Cmd::Print(_))), "{line}");
        }
    }
}
