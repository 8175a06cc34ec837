#!/usr/bin/env bash
# The test command: installs what the tests need (rustup components and targets, Debian tools,
# the pinned reference OpenClaw), then runs formatting, lints, every test and the no_std build.
#   ./scripts/test.sh          everything (what CI runs)
#   ./scripts/test.sh --quick  skip installing OpenClaw and the interop suite (and the SD image
#                              test, unless PINCER_IMAGE_TEST=1)
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

step() { printf '\n==> %s\n' "$*"; STEP_START=$(date +%s); }
done_step() { printf '    (%ss)\n' "$(( $(date +%s) - STEP_START ))"; }
# shellcheck source=need.sh
. scripts/need.sh

step "toolchain: rustfmt, clippy, riscv32imc target"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add riscv32imc-unknown-none-elf >/dev/null
need ip iproute2
need pkill procps     # kill/pkill in the shutdown and gpsd tests
need openssl openssl   # the reference gateway makes its self-signed TLS certificate with it
need gpsfake gpsd gpsd-clients   # a real gpsd fed by NMEA logs for location.get
export PINCER_REQUIRE_GPSD=1
need Xvfb xvfb x11-xserver-utils xauth   # a real X server for screen.snapshot over X11
export PINCER_REQUIRE_XVFB=1
need ffprobe ffmpeg      # reads and decodes the MP4s camera.clip / screen.record return (vm_hw.rs)
need chromium chromium   # a real browser for the WebChat and the Control UI (gateway/tests/webchat.rs)
need ssh openssh-client  # an SSH tunnel to a loopback gateway (gateway/tests/interop/ssh_tunnel.rs)
need /usr/sbin/sshd openssh-server   # the real sshd, run in a namespace by that test only
export PINCER_REQUIRE_CHROMIUM=1
done_step

# Nothing may need libclang to build: a fresh Debian machine has none, and the static musl
# targets have no C headers for bindgen to parse (pincer-hal hand-writes the V4L2 and ALSA
# ABIs). The whole graph: every target, normal, build and dev edges. Listing it (not
# `cargo tree -i`, which exits 101 for a crate missing from Cargo.lock and prints only a
# warning for one outside the graph) so a cargo failure fails the step instead of passing it.
step "no bindgen / clang-sys in the dependency graph"
deps=$(cargo tree --workspace --all-features --target all -e normal,build,dev --prefix none -f '{p}')
[ -n "$deps" ] || { echo "cargo tree listed nothing" >&2; exit 1; }
bad=$(grep -oE '^(bindgen|clang-sys) v[^ ]+' <<<"$deps" | sort -u | sed 's/ v/@/' || true)
if [ -n "$bad" ]; then
  for c in $bad; do cargo tree --workspace --all-features --target all -e normal,build,dev -i "$c" >&2; done
  echo "these need libclang at build time: $(tr '\n' ' ' <<<"$bad")" >&2
  exit 1
fi
done_step

# The interop suite (gateway/tests/interop/: the OpenClaw CLI and node host against
# pincer-gateway, pincer-node against the OpenClaw gateway; it has cargo build pincer-node)
# runs in the workspace test step below; with these set it must find the reference, without
# them (--quick) it skips.
if [ "$QUICK" = 0 ]; then
  step "reference OpenClaw ${OPENCLAW_VERSION:-2026.9.6}"
  eval "$(./scripts/install-openclaw.sh | grep -E '^OPENCLAW_(MJS|NODE)=')"
  export PINCER_OPENCLAW="$OPENCLAW_MJS" PINCER_NODE="$OPENCLAW_NODE" PINCER_REQUIRE_OPENCLAW=1
  done_step
fi
if [ "$QUICK" = 0 ]; then
  # The hardware classes run on real kernel drivers in a qemu VM (node/tests/vm_hw.rs): the
  # node inside is a static x86_64-musl build; tests/vm/build.sh fetches the kernel and qemu.
  # The abuse suites (gateway/tests/abuse.rs, node/tests/abuse.rs) attack the same release
  # builds, each in a memory cgroup. Built exactly as cross/build.sh builds them, so its step
  # finds them done.
  step "static release pincer-node and pincer-gateway (hardware VM, abuse suites)"
  rustup target add x86_64-unknown-linux-musl >/dev/null
  CC_x86_64_unknown_linux_musl=gcc cargo build --release --target x86_64-unknown-linux-musl -p pincer-node -p pincer-gateway
  musl="$PWD/target/x86_64-unknown-linux-musl/release"
  export PINCER_VM_NODE="$musl/pincer-node" PINCER_REQUIRE_VM=1
  export PINCER_ABUSE_NODE="$musl/pincer-node" PINCER_ABUSE_GATEWAY="$musl/pincer-gateway" PINCER_REQUIRE_ABUSE=1
  done_step
fi
if [ "$QUICK" = 0 ]; then
  # A real tailnet for the remote tests (tests/support/tailnet.rs): Tailscale and headscale at
  # pinned versions, built from the Go module proxy once per version into the cache (~5 min
  # cold on 2 cores, then nothing).
  step "tailnet binaries (tailscale, headscale)"
  eval "$(./scripts/install-tailnet.sh | grep -E '^(TAILSCALED|TAILSCALE|HEADSCALE)=')"
  export PINCER_TAILSCALED="$TAILSCALED" PINCER_TAILSCALE="$TAILSCALE" PINCER_HEADSCALE="$HEADSCALE"
  export PINCER_REQUIRE_TAILNET=1
  done_step
fi
# Network-namespace tests need root; CI runs as root.
# The full run requires them (a non-root full run fails there, as it should); --quick requires
# them only where they can run.
if [ "$QUICK" = 0 ] || [ "$(id -u)" -eq 0 ]; then export PINCER_REQUIRE_NETNS=1; fi

step "shellcheck (warnings and errors) over every shell script"
need shellcheck shellcheck
mapfile -t shell_scripts < <(grep -rlE '^#!(/usr/bin/env (ba)?sh|/bin/(ba)?sh|/bin/busybox sh)' \
  scripts cross images tests/vm 2>/dev/null | grep -vE '\.(service|timer|md|toml)$' | sort)
shellcheck -x -S warning "${shell_scripts[@]}" scripts/need.sh
echo "    ${#shell_scripts[@]} scripts clean"
done_step

step "cargo fmt --check"
cargo fmt --all -- --check
done_step

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
done_step

# The WebChat's JS signer (used where the page is not a secure context) against node:crypto.
webchat_node="${OPENCLAW_NODE:-$(command -v node || true)}"
if [ -n "$webchat_node" ]; then
  step "WebChat Ed25519 / SHA-256 / SHA-512 signer against node:crypto"
  "$webchat_node" gateway/webchat/ed25519.test.mjs
  done_step
elif [ "$QUICK" = 0 ]; then
  echo "no node for gateway/webchat/ed25519.test.mjs" >&2
  exit 1
fi

# Every test target once, the wire suite (gateway/tests/wire/) and the interop suite among them.
step "cargo test (workspace, all features)"
cargo test --workspace --all-features
done_step

if [ "$QUICK" = 0 ]; then
  # The arm64 and armhf packages are glibc builds, whose allocator keeps freed memory unless
  # asked (pincer_os::release_free_memory): the gateway's abuse suite once more against one.
  step "abuse suite against a glibc release pincer-gateway"
  cargo build --release -p pincer-gateway
  PINCER_ABUSE_GATEWAY="$PWD/target/release/pincer-gateway" cargo test --all-features -p pincer-gateway --test abuse
  done_step
fi

# Each hardware class and node feature must build on its own: a board owner builds only what
# the board has (cargo check: type and borrow errors, no codegen).
step "feature matrix: pincer-hal and pincer-node with no features, each alone, all; channels off"
for f in "" location camera screen audio video video-soft "camera video"; do
  cargo check -q -p pincer-hal --no-default-features ${f:+--features "$f"}
done
cargo check -q -p pincer-hal --all-features
for f in "" system tls location camera screen audio video-soft; do
  cargo check -q -p pincer-node --no-default-features ${f:+--features "$f"}
done
cargo check -q -p pincer-node --all-features
# Channels are features too: the gateway and pincer-channels without any.
cargo check -q -p pincer-channels --no-default-features
cargo check -q -p pincer-gateway --no-default-features
echo "    19 combinations build"
done_step

step "no_std core for riscv32imc-unknown-none-elf"
cargo build -p pincer-protocol --no-default-features --target riscv32imc-unknown-none-elf
done_step

if [ "$QUICK" = 0 ]; then
  # A few seconds of coverage-guided inputs into every decoder of hostile bytes (fuzz/README.md;
  # long campaigns: scripts/fuzz.sh). Nightly and cargo-fuzz are installed by the script.
  step "fuzz smoke: frame, params, node_invoke, wav, pixels, x11_setup, weight, ws_meter, provider_stream (${PINCER_FUZZ_SECONDS:-15} s each)"
  ./scripts/fuzz.sh --smoke
  done_step
fi

if [ "$QUICK" = 0 ]; then
  step "cross builds (aarch64 gnu/musl, armv7, armv6 musl, x86_64 musl): ELF checks, size budgets, qemu-user runs, emulated end to end"
  ./cross/build.sh
  done_step

  step "Debian packages (amd64, arm64, armhf, armhf-armv6); the amd64 one installed into a throw-away root"
  ./cross/deb.sh
  ./cross/deb-test.sh
  done_step
fi

# The SD image (images/): built from Debian packages under qemu-user (the Debian root is cached
# in ~/.cache/pincer/image; cold it is the slowest step by far, see images/README.md) and booted
# under qemu-system-aarch64. Runs without --quick, or with PINCER_IMAGE_TEST=1;
# PINCER_IMAGE_TEST=0 skips it.
if [ "${PINCER_IMAGE_TEST:-}" = 1 ] || { [ "$QUICK" = 0 ] && [ "${PINCER_IMAGE_TEST:-}" != 0 ]; }; then
  step "SD image: images/build.sh + boot test under qemu-system-aarch64 (images/test.sh)"
  ./images/test.sh
  done_step
  # The Pi Zero / Zero W / 1 image (Debian armel, the static armv6 node) on qemu's raspi0:
  # setup-code pairing, location.get, system.which, camera and audio, used memory <= 64 MB,
  # the second boot without pairing (images/README.md, "32-bit boards").
  step "SD image for the Pi Zero / 1: images/build.sh --board armel + boot test under qemu -M raspi0"
  ./images/test.sh --board armel
  done_step
fi

if [ "$QUICK" = 1 ]; then
  printf '\nquick mode: the OpenClaw interop and VM hardware tests passed by skipping; fuzz smoke, cross builds, packages%s were not run\n' \
    "$([ "${PINCER_IMAGE_TEST:-}" = 1 ] || echo " and the SD image")"
fi
printf '\nall checks passed\n'
