//! Interop against the real OpenClaw (`openclaw@2026.9.6`, reference §0; what a compatible
//! implementation needs: "Minimum for interop" A and B), in both directions:
//!
//! * `agent`: the same scripted turns through both gateways; `openclaw agent` on pincer-gateway.
//! * `cli`: the OpenClaw CLI reads pincer-gateway (`gateway health|call|probe`, `status`).
//! * `channels`: `openclaw channels status [--probe]` shows pincer-gateway's Telegram bot.
//! * `trust`: the OpenClaw CLI approves devices and node surfaces on pincer-gateway, and the
//!   real headless node host (`openclaw node run`) connects and answers invokes.
//! * `tls`: the OpenClaw CLI over `wss://` to pincer-gateway, pinned.
//! * `ssh_tunnel`: the OpenClaw CLI through `ssh -N -L` to a loopback-bound pincer-gateway in a
//!   namespace running the real `sshd`.
//! * `pincer_node`: pincer-node joins the real OpenClaw gateway (after a browser used its
//!   Control UI), over `ws://` and pinned `wss://`.
//!
//! Needs `PINCER_OPENCLAW` (path to `openclaw.mjs`) and `PINCER_NODE` (Node 24), which
//! `scripts/test.sh` installs and exports (see `support::openclaw`). Without them every test
//! says so and passes (the `--quick` run), unless `PINCER_REQUIRE_OPENCLAW=1`: then it fails.
//!
//! Run: `cargo test -p pincer-gateway --test interop`.

#[path = "../support/mod.rs"]
mod support;
use support::one_at_a_time;

#[path = "../../../tests/support/cdp.rs"]
mod cdp;
#[path = "../../../tests/support/fake_telegram.rs"]
mod fake_telegram;

mod agent;
mod channels;
mod cli;
mod pincer_node;
mod ssh_tunnel;
mod tls;
mod trust;
