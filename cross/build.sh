#!/usr/bin/env bash
# Cross builds of pincer-node and pincer-gateway for Raspberry Pi boards, with a size report and
# ELF checks. Installs its own prerequisites (Debian cross gcc, qemu-user-static, rustup targets).
#
#   cross/build.sh                 aarch64 (gnu, musl), armv7 (gnu), armv6 (musl), x86_64 (musl)
#   cross/build.sh TARGET...       only these
#
# Each artefact is checked: ELF machine, float ABI / CPU arch tag for ARM, static for musl, and
# `--version` under qemu-user (natively for x86_64-musl; armv6 on an emulated ARM1176). Sizes
# are printed; the budgets apply to the boards' targets: pincer-node 3 MB, pincer-gateway 4 MB.
#
# armv6 (Pi Zero / Pi 1) is arm-unknown-linux-musleabihf, fully static: rustup has no std for
# it here (std is built with -Zbuild-std), and Debian's armhf crt files, libgcc and glibc are
# ARMv7 / Thumb-2 code that a glibc build would carry (and that qemu's ARM1176 refuses to run:
# a dynamic armv6 glibc build cannot even be tested against Debian's armhf loader). So musl
# (Debian's source package) and LLVM's libunwind (from rust-src) are compiled for the ARM1176
# into $CARGO_TARGET_DIR/armv6-sysroot, and cross/armv6-musl-cc links against them only.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
ARMV6=arm-unknown-linux-musleabihf
# 3 MB with the software H.264 encoder (issue 15: `video-soft`, ~0.4 MB); 2.5 MB before it.
NODE_BUDGET=$((3000 * 1024))
GATEWAY_BUDGET=$((4000 * 1024))

# shellcheck source=../scripts/need.sh
. scripts/need.sh
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
need qemu-aarch64-static qemu-user-static
need readelf binutils
if [[ " ${TARGETS[*]} " == *" $ARMV6 "* ]]; then
  need arm-linux-gnueabihf-g++ g++-arm-linux-gnueabihf   # LLVM libunwind has C++ sources
  need make make
  rustup component add rust-src >/dev/null 2>&1
fi

# Linkers (and C compilers for ring) per target.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export CC_x86_64_unknown_linux_musl=gcc

# armv6: ARM1176JZF-S code in ARM mode with VFPv2, hard-float ABI, for everything we compile.
ARMV6_CFLAGS="-mcpu=arm1176jzf-s -marm -mfpu=vfp -mfloat-abi=hard"
export PINCER_ARMV6_SYSROOT="$PWD/$TARGET_DIR/armv6-sysroot"
[[ "$TARGET_DIR" = /* ]] && PINCER_ARMV6_SYSROOT="$TARGET_DIR/armv6-sysroot"
export CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_LINKER="$PWD/cross/armv6-musl-cc"
# For the Zero's size (docs/size.md, issue 16): no unwind tables (panic=abort needs none; std
# is built without backtraces below) and no file:line in panic messages (the message stays).
export CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="-C link-self-contained=no -C target-feature=+crt-static -C target-cpu=arm1176jzf-s -C force-unwind-tables=no -Zlocation-detail=none"
export CC_arm_unknown_linux_musleabihf=arm-linux-gnueabihf-gcc AR_arm_unknown_linux_musleabihf=arm-linux-gnueabihf-ar
ARMV6_GCC_INCLUDE=$(arm-linux-gnueabihf-gcc -print-file-name=include)
export CFLAGS_arm_unknown_linux_musleabihf="$ARMV6_CFLAGS -nostdinc -isystem $PINCER_ARMV6_SYSROOT/include -isystem $ARMV6_GCC_INCLUDE"

# musl and LLVM libunwind for the ARM1176 into $PINCER_ARMV6_SYSROOT, once per musl / rustc
# version (about 40 s). musl's source is Debian's: fetched by apt-get from deb-src entries of
# the mirrors this host already uses, with a private source list and state dir, so the host's
# apt configuration is left as it is; apt checks the signatures and checksums.
armv6_sysroot() {
  local sysroot=$PINCER_ARMV6_SYSROOT work stamp f unwind gccinc
  stamp="$(rustc --version) / $(sha256sum cross/build.sh | cut -c1-16)"
  if [ -f "$sysroot/.stamp" ] && [ "$(cat "$sysroot/.stamp")" = "$stamp" ]; then return 0; fi
  work=$(mktemp -d)
  mkdir -p "$work/apt/lists/partial" "$work/apt/parts"
  [ -f /etc/apt/sources.list ] && sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$work/apt/parts/main.list"
  for f in /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && sed -n 's/^deb /deb-src /p' "$f" >"$work/apt/parts/$(basename "$f")"; done
  for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$work/apt/parts/$(basename "$f")"; done
  local apt=(apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$work/apt/parts" -o Dir::State::Lists="$work/apt/lists")
  # The source is kept in the cache by version; a mirror that fails now and then (a Sources
  # index refused, a lock, a timeout) is asked three times and its answer shown if it fails.
  local src_cache="${PINCER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pincer}/src" try
  mkdir -p "$src_cache"
  for try in 1 2 3; do
    # An index that fails to download (another suite's, say) is no reason to stop: the
    # source download below says whether musl's was read.
    "${apt[@]}" update >"$work/apt.log" 2>&1 || true
    if (cd "$work" && "${apt[@]}" source --download-only musl >>"$work/apt.log" 2>&1) \
        && ls "$work"/musl_*.orig.tar.gz >/dev/null 2>&1; then
      cp "$work"/musl_*.orig.tar.gz "$src_cache/"
      break
    fi
    [ "$try" = 3 ] && break
    sleep $((try * 10))
  done
  if ! ls "$work"/musl_*.orig.tar.gz >/dev/null 2>&1; then
    # shellcheck disable=SC2012 # names of our own cache, newest first
    f=$(ls -t "$src_cache"/musl_*.orig.tar.gz 2>/dev/null | head -1)
    if [ -z "$f" ]; then
      echo "armv6 sysroot: could not fetch musl's source from the Debian mirrors (apt-get source musl):" >&2
      tail -20 "$work/apt.log" >&2
      exit 1
    fi
    echo "armv6 sysroot: apt-get source musl failed; using the cached $(basename "$f")" >&2
    cp "$f" "$work/"
  fi
  tar -C "$work" -xzf "$work"/musl_*.orig.tar.gz
  rm -rf "$sysroot"
  (cd "$work"/musl-*/ && ./configure --target=arm-linux-gnueabihf --prefix="$sysroot" --disable-shared \
      CC=arm-linux-gnueabihf-gcc CFLAGS="$ARMV6_CFLAGS -Os" >/dev/null &&
    make -j"$(nproc)" >/dev/null 2>&1 && make install >/dev/null 2>&1)
  # LLVM libunwind from rust-src, as Rust's own musl targets ship it (the unwind crate links
  # -lunwind statically); the file list and flags are those of Rust's bootstrap.
  unwind="$(rustc --print sysroot)/lib/rustlib/src/rust/src/llvm-project/libunwind"
  gccinc=$(arm-linux-gnueabihf-gcc -print-file-name=include)
  local cpu_flags
  read -ra cpu_flags <<<"$ARMV6_CFLAGS"
  local flags=("${cpu_flags[@]}" -Os -nostdinc -isystem "$sysroot/include" -isystem "$gccinc" -I"$unwind/include"
    -fstrict-aliasing -funwind-tables -fvisibility=hidden -D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS
    -D_LIBUNWIND_IS_NATIVE_ONLY -DNDEBUG)
  mkdir -p "$work/unwind"
  for f in Unwind-sjlj.c UnwindLevel1-gcc-ext.c UnwindLevel1.c UnwindRegistersRestore.S UnwindRegistersSave.S; do
    arm-linux-gnueabihf-gcc "${flags[@]}" -std=c99 -c "$unwind/src/$f" -o "$work/unwind/${f%.*}.o"
  done
  for f in Unwind-EHABI.cpp libunwind.cpp; do
    arm-linux-gnueabihf-g++ "${flags[@]}" -std=c++17 -fno-exceptions -fno-rtti -nostdinc++ -c "$unwind/src/$f" -o "$work/unwind/${f%.*}.o"
  done
  arm-linux-gnueabihf-ar rcs "$sysroot/lib/libunwind.a" "$work"/unwind/*.o
  echo "$stamp" >"$sysroot/.stamp"
  rm -rf "$work"
}

# ARMv6 instruction scan of a linked, unstripped armv6 binary. ARMv6KZ (ARM1176) has ARM and
# Thumb-1, VFPv2 with d0-d15, no NEON, no VFPv3, none of ARMv6T2's / ARMv7's instructions. Any
# such instruction must sit in a function that only runs after a run-time CPU check: ring's
# NEON / bit-sliced / vector-permutation AES code (entered only when AT_HWCAP has NEON), musl's
# ARMv7 atomics (chosen by AT_HWCAP), libunwind's VFPv3 register save (only for d16-d31).
# Prints "<functions>:<instructions>" of that gated code; fails listing anything else.
ARMV6_GATED='^<(ring_core_[0-9_]+__[A-Za-z0-9_]*([Nn][Ee][Oo][Nn]|bsaes_|vpaes_)[A-Za-z0-9_]*|_bsaes_[a-z0-9_]+|_vpaes_[a-z0-9_]+|\._[A-Za-z0-9_]+|__a_barrier_v7|__a_cas_v7|_ZN9libunwind13Registers_arm[0-9]+(save|restore)VFPv3EPv)>:$'
armv6_scan() {
  local f=$1
  if readelf -s "$f" | awk '{print $8}' | grep -q '^\$t'; then echo "Thumb code present"; return 1; fi
  arm-linux-gnueabihf-objdump -d --no-show-raw-insn "$f" | gated="$ARMV6_GATED" awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $2; next }
    /^ *[0-9a-f]+:\t/ {
      ins = $0; sub(/^ *[0-9a-f]+:\t/, "", ins); sub(/[ \t]*[<;@].*$/, "", ins)
      m = ins; sub(/[ \t].*$/, "", m)
      bad = 0
      if (m ~ /^(movw|movt|ubfx|sbfx|bfi|bfc|rbit|mls|sdiv|udiv|dmb|dsb|isb|pldw|it[te]*|cbn?z|tbb|tbh|ldrht|strht|ldrsbt|ldrsht|ldrexd?[bh]?\.w)$/) bad = 1
      if (m ~ /^v/ && ins ~ /[ \t,{]q([0-9]|1[0-5])([^0-9]|$)/) bad = 1          # NEON quad registers
      if (m ~ /^v/ && ins ~ /[ \t,{]d(1[6-9]|2[0-9]|3[01])([^0-9]|$)/) bad = 1    # VFPv3-D32 registers
      if (m ~ /^v/ && m !~ /^vcvt/ && m ~ /\.([isup]?(8|16|64)|[iu]32|p8)$/) bad = 1  # NEON integer forms
      if (m ~ /^vcvt/ && (ins ~ /#/ || m ~ /f16/ || ins ~ /[ \t]d[0-9]+, d[0-9]+/)) bad = 1    # NEON / VFPv3 conversions
      if (m ~ /^v(ld[1-4]|st[1-4]|eor|and|orr|orn|bic|ext|rev|zip|uzp|trn|dup|shl|shr|sli|sri|rshr|pad|qadd|qsub|tbl|tbx|bsl|bit|bif|mull|mlal|sra|swp|cnt|cls|clz|tst|ceq|cgt|cge)/) bad = 1
      if (m ~ /^vmov/ && ins ~ /#/) bad = 1                                          # VFPv3 immediates
      if (bad) { if (fn ~ ENVIRON["gated"]) { g[fn]++; gn++ } else { n[fn]++; bn++ } }
    }
    END {
      for (x in n) print "not ARMv6: " n[x] " in " x
      printf "%d:%d\n", length(g), gn
      exit (bn > 0)
    }'
}

fail=0
printf '\n%-32s %-16s %10s %s\n' target binary bytes checks
for t in "${TARGETS[@]}"; do
  build=(cargo build --release --target "$t" -p pincer-node -p pincer-gateway)
  if [ "$t" = "$ARMV6" ]; then
    armv6_sysroot
    # shellcheck disable=SC2054 # the comma belongs to the -Zbuild-std value
    # std rebuilt for size: its `optimize_for_size` feature, and without `backtrace` (no
    # gimli/addr2line/demangler in the binary; a panic prints its message, no backtrace).
    build=(env RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size --release --target "$t" -p pincer-node -p pincer-gateway)
  else
    rustup target add "$t" >/dev/null 2>&1
  fi
  "${build[@]}" >/dev/null 2>&1 \
    || { echo "build failed for $t:"; "${build[@]}" 2>&1 | tail -20; exit 1; }
  for bin in pincer-node pincer-gateway; do
    f="$TARGET_DIR/$t/release/$bin"
    size=$(stat -c %s "$f")
    checks=()
    header=$(readelf -h "$f")
    case "$t" in
      aarch64-*) grep -q "AArch64" <<<"$header" && checks+=("machine aarch64") || { checks+=("WRONG MACHINE"); fail=1; }
                 qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
      armv7-*) grep -q "ARM" <<<"$header" && checks+=("machine arm") || { checks+=("WRONG MACHINE"); fail=1; }
               attrs=$(readelf -A "$f")
               grep -q "Tag_CPU_arch: v7" <<<"$attrs" && checks+=("v7") || { checks+=("NOT v7"); fail=1; }
               grep -q "Tag_ABI_VFP_args: VFP registers" <<<"$attrs" && checks+=("hard-float") || { checks+=("NOT hard-float"); fail=1; }
               qemu=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
      "$ARMV6") grep -q "ARM" <<<"$header" && checks+=("machine arm") || { checks+=("WRONG MACHINE"); fail=1; }
               attrs=$(readelf -A "$f")
               grep -q "Tag_ABI_VFP_args: VFP registers" <<<"$attrs" && checks+=("hard-float") || { checks+=("NOT hard-float"); fail=1; }
               # The merged attribute tags name the most any input object may use. Without
               # ring's assembly they are v6 with no NEON; ring's perlasm objects carry v7 +
               # NEON (they hold the NEON variants it picks at run time), so then the
               # instruction scan is what decides.
               if grep -q "Tag_CPU_arch: v6" <<<"$attrs" && ! grep -q "Tag_Advanced_SIMD_arch" <<<"$attrs"; then
                 checks+=("Tag_CPU_arch v6, no NEON tag")
               else
                 checks+=("tags $(sed -n 's/.*Tag_CPU_arch: //p' <<<"$attrs")+$(sed -n 's/.*Tag_Advanced_SIMD_arch: //p' <<<"$attrs")")
               fi
               if [ ! -f "$f.unstripped" ]; then
                 checks+=("NO UNSTRIPPED COPY to scan"); fail=1
               elif scan=$(armv6_scan "$f.unstripped"); then
                 checks+=("ARMv6 instructions only, ARM mode (v7/NEON only in ${scan%%:*} CPU-gated functions)")
               else
                 checks+=("NOT ARMv6: $(tr '\n' ' ' <<<"$scan")"); fail=1
               fi
               qemu=(qemu-arm-static -cpu arm1176) ;;
      x86_64-*) grep -q "X86-64" <<<"$header" && checks+=("machine x86-64") || { checks+=("WRONG MACHINE"); fail=1; }; qemu=() ;;
    esac
    if [[ "$t" == *musl* ]]; then
      readelf -l "$f" | grep -q "INTERP" && { checks+=("NOT static"); fail=1; } || checks+=("static")
    fi
    if "${qemu[@]}" "$f" --version >/dev/null 2>&1; then checks+=("runs$([ ${#qemu[@]} -eq 0 ] && echo " natively" || echo " under ${qemu[0]}$([ "$t" = "$ARMV6" ] && echo " -cpu arm1176")")"); else checks+=("DOES NOT RUN"); fail=1; fi
    # The budgets are for the boards (aarch64, 32-bit ARM); x86_64 is reported only.
    budget=$NODE_BUDGET; [ "$bin" = pincer-gateway ] && budget=$GATEWAY_BUDGET
    if [[ "$t" != x86_64-* ]] && [ "$size" -gt "$budget" ]; then checks+=("OVER BUDGET ($budget)"); fail=1; fi
    printf '%-32s %-16s %10d %s\n' "$t" "$bin" "$size" "$(IFS=', '; echo "${checks[*]}")"
  done
done

# End to end under emulation: the emulated node pairs with a native gateway on loopback and
# answers an invoke; the emulated gateway serves a native node.
cargo build --release -p pincer-node -p pincer-gateway >/dev/null 2>&1
NATIVE_GW=$TARGET_DIR/release/pincer-gateway
NATIVE_NODE=$TARGET_DIR/release/pincer-node
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

e2e() { # e2e TARGET QEMU-COMMAND...
  local t=$1 tmp pids=()
  local qemu=("${@:2}")
  tmp=$(mktemp -d)
  local result=ok
  # Emulated node -> native gateway.
  "$NATIVE_GW" run --port 0 --token "$TOKEN" --state-dir "$tmp/gw" >"$tmp/gw.out" 2>"$tmp/gw.err" & pids+=($!)
  local port; port=$(wait_port "$tmp/gw.out") || result="native gateway did not start"
  if [ "$result" = ok ]; then
    "${qemu[@]}" "$TARGET_DIR/$t/release/pincer-node" run --gateway "ws://127.0.0.1:$port" --token "$TOKEN" \
      --caps system --name "emu-node" --state-dir "$tmp/node" >/dev/null 2>"$tmp/node.err" & pids+=($!)
    invoke_ok "$port" "$tmp/op" emu-node || result="emulated node did not answer (see $tmp/node.err)"
  fi
  kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; pids=()
  # Native node -> emulated gateway.
  if [ "$result" = ok ]; then
    "${qemu[@]}" "$TARGET_DIR/$t/release/pincer-gateway" run --port 0 --token "$TOKEN" --state-dir "$tmp/gw2" \
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
    aarch64-*) e2e "$t" qemu-aarch64-static -L /usr/aarch64-linux-gnu ;;
    armv7-*) e2e "$t" qemu-arm-static -L /usr/arm-linux-gnueabihf ;;
    "$ARMV6") e2e "$t" qemu-arm-static -cpu arm1176 ;;
  esac
done
exit $fail
