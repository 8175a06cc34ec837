#!/usr/bin/env bash
# Cross builds of pincer-node and pincer-gateway for Raspberry Pi boards, with a size report and
# ELF checks. Installs its own prerequisites (Debian cross gcc, qemu-user-static, rustup targets).
#
#   cross/build.sh                 aarch64 (gnu, musl) and armv7 (gnu)
#   cross/build.sh TARGET...       only these
#
# Each artefact is checked: ELF machine, float ABI / CPU arch tag for ARM, static for musl, and
# `--version` under qemu-user. Sizes are printed; budgets: pincer-node 2.5 MB, pincer-gateway 4 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
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
    esac
    if [[ "$t" == *musl* ]]; then
      readelf -l "$f" | grep -q "INTERP" && { checks+=("NOT static"); fail=1; } || checks+=("static")
    fi
    if $qemu -L "$sysroot" "$f" --version >/dev/null 2>&1; then checks+=("runs under $qemu"); else checks+=("DOES NOT RUN"); fail=1; fi
    budget=$NODE_BUDGET; [ "$bin" = pincer-gateway ] && budget=$GATEWAY_BUDGET
    if [ "$size" -gt "$budget" ]; then checks+=("OVER BUDGET ($budget)"); fail=1; fi
    printf '%-32s %-16s %10d %s\n' "$t" "$bin" "$size" "$(IFS=', '; echo "${checks[*]}")"
  done
done
exit $fail
