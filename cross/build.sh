#!/usr/bin/env bash
# Cross builds of pincer-node and pincer-gateway for Raspberry Pi boards, with a size report and
# ELF checks. Installs its own prerequisites (Debian cross gcc, qemu-user-static, rustup targets).
#
#   cross/build.sh                 aarch64 (gnu, musl), armv7 (gnu), x86_64 (musl)
#   cross/build.sh TARGET...       only these
#
# Each artefact is checked: ELF machine, float ABI / CPU arch tag for ARM, static for musl, and
# `--version` under qemu-user (natively for x86_64-musl). Sizes are printed; the budgets apply to
# the boards' targets: pincer-node 2.5 MB, pincer-gateway 4 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl)
NODE_BUDGET=$((2500 * 1024))
GATEWAY_BUDGET=$((4000 * 1024))
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

need() { command -v "$1" >/dev/null 2>&1 || { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq; $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${@:2}" >/dev/null; }; }
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
need qemu-aarch64-static qemu-user-static
need readelf binutils

# Linkers (and C compilers for ring) per target.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export CC_x86_64_unknown_linux_musl=gcc

fail=0
printf '\n%-32s %-16s %10s %s\n' target binary bytes checks
for t in "${TARGETS[@]}"; do
  rustup target add "$t" >/dev/null 2>&1
  cargo build --release --target "$t" -p pincer-node -p pincer-gateway >/dev/null 2>&1 \
    || { echo "build failed for $t:"; cargo build --release --target "$t" -p pincer-node -p pincer-gateway 2>&1 | tail -20; exit 1; }
  for bin in pincer-node pincer-gateway; do
    f="target/$t/release/$bin"
    size=$(stat -c %s "$f")
    checks=()
    header=$(readelf -h "$f")
    case "$t" in
      aarch64-*) grep -q "AArch64" <<<"$header" && checks+=("machine aarch64") || { checks+=("WRONG MACHINE"); fail=1; }; qemu=qemu-aarch64-static; sysroot=/usr/aarch64-linux-gnu ;;
      armv7-*) grep -q "ARM" <<<"$header" && checks+=("machine arm") || { checks+=("WRONG MACHINE"); fail=1; }
               attrs=$(readelf -A "$f")
               grep -q "Tag_CPU_arch: v7" <<<"$attrs" && checks+=("v7") || { checks+=("NOT v7"); fail=1; }
               grep -q "Tag_ABI_VFP_args: VFP registers" <<<"$attrs" && checks+=("hard-float") || { checks+=("NOT hard-float"); fail=1; }
               qemu=qemu-arm-static; sysroot=/usr/arm-linux-gnueabihf ;;
      x86_64-*) grep -q "X86-64" <<<"$header" && checks+=("machine x86-64") || { checks+=("WRONG MACHINE"); fail=1; }; qemu=env; sysroot="" ;;
    esac
    if [[ "$t" == *musl* ]]; then
      readelf -l "$f" | grep -q "INTERP" && { checks+=("NOT static"); fail=1; } || checks+=("static")
    fi
    if { [ "$qemu" = env ] && "$f" --version >/dev/null 2>&1; } || { [ "$qemu" != env ] && $qemu -L "$sysroot" "$f" --version >/dev/null 2>&1; }; then checks+=("runs$([ "$qemu" = env ] && echo " natively" || echo " under $qemu")"); else checks+=("DOES NOT RUN"); fail=1; fi
    # The budgets are for the boards (aarch64, 32-bit ARM); x86_64 is reported only.
    budget=$NODE_BUDGET; [ "$bin" = pincer-gateway ] && budget=$GATEWAY_BUDGET
    if [[ "$t" != x86_64-* ]] && [ "$size" -gt "$budget" ]; then checks+=("OVER BUDGET ($budget)"); fail=1; fi
    printf '%-32s %-16s %10d %s\n' "$t" "$bin" "$size" "$(IFS=', '; echo "${checks[*]}")"
  done
done

# End to end under emulation: the emulated node pairs with a native gateway on loopback and
# answers an invoke; the emulated gateway serves a native node.
cargo build --release -p pincer-node -p pincer-gateway >/dev/null 2>&1
NATIVE_GW=target/release/pincer-gateway
NATIVE_NODE=target/release/pincer-node
TOKEN=cross-e2e-token

wait_port() { # wait_port FILE -> prints the port from "pincer-gateway listening on ws://127.0.0.1:PORT"
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$1" 2>/dev/null; then sed -n 's/.*:\([0-9]*\)$/\1/p' "$1" | head -1; return 0; fi
    sleep 0.1
  done
  return 1
}

invoke_ok() { # invoke_ok PORT STATE NAME -> 0 when the node named NAME answers system.which
  local port=$1 state=$2 name=$3
  for _ in $(seq 1 100); do
    if "$NATIVE_GW" nodes invoke "$name" system.which --params '{"bins":["sh"]}' --json \
        --url "ws://127.0.0.1:$port" --token "$TOKEN" --state-dir "$state" 2>/dev/null | grep -q '"sh"'; then
      return 0
    fi
    sleep 0.3
  done
  return 1
}

e2e() { # e2e TARGET QEMU SYSROOT
  local t=$1 qemu=$2 sysroot=$3 tmp pids=()
  tmp=$(mktemp -d)
  local result=ok
  # Emulated node -> native gateway.
  "$NATIVE_GW" run --port 0 --token "$TOKEN" --state-dir "$tmp/gw" >"$tmp/gw.out" 2>"$tmp/gw.err" & pids+=($!)
  local port; port=$(wait_port "$tmp/gw.out") || result="native gateway did not start"
  if [ "$result" = ok ]; then
    "$qemu" -L "$sysroot" "target/$t/release/pincer-node" run --gateway "ws://127.0.0.1:$port" --token "$TOKEN" \
      --caps system --name "emu-node" --state-dir "$tmp/node" >/dev/null 2>"$tmp/node.err" & pids+=($!)
    invoke_ok "$port" "$tmp/op" emu-node || result="emulated node did not answer (see $tmp/node.err)"
  fi
  kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; pids=()
  # Native node -> emulated gateway.
  if [ "$result" = ok ]; then
    "$qemu" -L "$sysroot" "target/$t/release/pincer-gateway" run --port 0 --token "$TOKEN" --state-dir "$tmp/gw2" \
      >"$tmp/gw2.out" 2>"$tmp/gw2.err" & pids+=($!)
    port=$(wait_port "$tmp/gw2.out") || result="emulated gateway did not start (see $tmp/gw2.err)"
    if [ "$result" = ok ]; then
      "$NATIVE_NODE" run --gateway "ws://127.0.0.1:$port" --token "$TOKEN" --caps system --name native-node \
        --state-dir "$tmp/node2" >/dev/null 2>&1 & pids+=($!)
      invoke_ok "$port" "$tmp/op2" native-node || result="emulated gateway did not route the invoke"
    fi
    kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null
  fi
  printf '%-32s %-16s %s\n' "$t" "end to end" "$result"
  [ "$result" = ok ] || fail=1
  [ "$result" = ok ] && rm -rf "$tmp"
  return 0
}

for t in "${TARGETS[@]}"; do
  case "$t" in
    aarch64-*) e2e "$t" qemu-aarch64-static /usr/aarch64-linux-gnu ;;
    armv7-*) e2e "$t" qemu-arm-static /usr/arm-linux-gnueabihf ;;
  esac
done
exit $fail
