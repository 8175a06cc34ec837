#!/usr/bin/env bash
# Debian packages from the cross builds: one package, `pincer`, with both binaries, the systemd
# units and the example configs. Binaries come from cross/build.sh (run for any target whose
# binaries are missing, so every packaged binary has passed its ELF, size and emulation checks;
# binaries already there are packaged as they are: run cross/build.sh first after a change).
#
#   cross/deb.sh                   all four packages
#   cross/deb.sh TARGET...         only these targets
#
#   x86_64-unknown-linux-musl      -> pincer_<version>_amd64.deb        (static)
#   aarch64-unknown-linux-gnu      -> pincer_<version>_arm64.deb        (Depends: libc6, libgcc-s1)
#   armv7-unknown-linux-gnueabihf  -> pincer_<version>_armhf.deb        (Depends: libc6, libgcc-s1)
#   arm-unknown-linux-musleabihf   -> pincer_<version>_armhf-armv6.deb  (static, ARMv6 + VFP)
#   arm-unknown-linux-musleabihf=armel -> pincer_<version>_armel.deb    (the same static build,
#                                    Architecture: armel, for Debian armel: the Pi Zero / Pi 1 SD image)
#
# The armv6 package is Architecture: armhf, because that is what dpkg on Raspberry Pi OS says
# on a Pi Zero / Pi 1 (Raspbian's armhf is ARMv6 + VFP; Debian's armel is soft-float and would
# not install there). Being static, it also installs and runs on every 32-bit ARMv7 system.
#
# Output: $CARGO_TARGET_DIR/deb/ (default target/deb/). Built with dpkg-deb from a staging
# tree, files owned by root.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf arm-unknown-linux-musleabihf)
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$VERSION" ] || { echo "deb.sh: no version in Cargo.toml" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "deb.sh: dpkg-deb missing" >&2; exit 1; }

# The Depends of dynamically linked binaries: libc6 at the newest GLIBC_ symbol version any of
# them uses, libgcc-s1 for the unwinder; any other library is an error (none is expected).
depends_of() { # depends_of FILE...
  local f lib gcc="" glibc deps=()
  for f in "$@"; do
    for lib in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      case "$lib" in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libutil.so.*|ld-linux*) ;;
        libgcc_s.so.1) gcc=1 ;;
        *) echo "deb.sh: $f needs $lib, which no Depends covers" >&2; return 1 ;;
      esac
    done
  done
  glibc=$(for f in "$@"; do readelf -V -W "$f"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  [ -z "$glibc" ] || deps+=("libc6 (>= $glibc)")
  [ -z "$gcc" ] || deps+=("libgcc-s1")
  local IFS=,
  echo "${deps[*]}" | sed 's/,/, /g'
}

mkdir -p "$TARGET_DIR/deb"
for t in "${TARGETS[@]}"; do
  want_arch=
  case "$t" in *=*) want_arch=${t#*=}; t=${t%%=*} ;; esac
  case "$t" in
    x86_64-unknown-linux-musl) arch=amd64; file=amd64 ;;
    x86_64-unknown-linux-gnu) arch=amd64; file=amd64 ;;
    aarch64-unknown-linux-gnu|aarch64-unknown-linux-musl) arch=arm64; file=arm64 ;;
    armv7-unknown-linux-gnueabihf) arch=armhf; file=armhf ;;
    arm-unknown-linux-musleabihf) arch=armhf; file=armhf-armv6 ;;
    *) echo "deb.sh: no Debian architecture for $t" >&2; exit 1 ;;
  esac
  if [ -n "$want_arch" ]; then
    # only a static build may claim another architecture
    [ "$t" = arm-unknown-linux-musleabihf ] && [ "$want_arch" = armel ] \
      || { echo "deb.sh: $t cannot be packaged as $want_arch" >&2; exit 1; }
    arch=armel; file=armel
  fi
  bin="$TARGET_DIR/$t/release"
  if [ ! -x "$bin/pincer-node" ] || [ ! -x "$bin/pincer-gateway" ]; then
    ./cross/build.sh "$t"
  fi
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/etc/pincer" "$stage/usr/share/doc/pincer"
  install -m 0755 "$bin/pincer-node" "$bin/pincer-gateway" "$stage/usr/bin/"
  install -m 0644 configs/pincer-node.service configs/pincer-gateway.service "$stage/lib/systemd/system/"
  install -m 0644 configs/node.toml configs/gateway.toml "$stage/etc/pincer/"
  install -m 0644 cross/debian/copyright README.md "$stage/usr/share/doc/pincer/"
  install -m 0755 cross/debian/postinst cross/debian/prerm cross/debian/postrm "$stage/DEBIAN/"
  printf '/etc/pincer/node.toml\n/etc/pincer/gateway.toml\n' >"$stage/DEBIAN/conffiles"
  depends=$(depends_of "$bin/pincer-node" "$bin/pincer-gateway")
  {
    echo "Package: pincer"
    echo "Version: $VERSION"
    echo "Architecture: $arch"
    echo "Maintainer: Pincer developers <pincer@example.invalid>"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
    echo "Depends: passwd${depends:+, $depends}"
    echo "Section: net"
    echo "Priority: optional"
    echo "Description: OpenClaw-compatible gateway and headless node for small boards"
    echo " pincer-node joins an OpenClaw (or pincer) gateway as a headless node and serves"
    echo " system, location and hardware commands; pincer-gateway is a lean, wire-compatible"
    echo " OpenClaw gateway. The pincer-node service is enabled on install; pincer-gateway.service"
    echo " is installed but not enabled. Built for $t."
  } >"$stage/DEBIAN/control"
  out="$TARGET_DIR/deb/pincer_${VERSION}_${file}.deb"
  dpkg-deb --build --root-owner-group -Zxz "$stage" "$out" >/dev/null
  rm -rf "$stage"; trap - EXIT
  printf '%-32s %s (%s bytes)\n' "$t" "$out" "$(stat -c %s "$out")"
done
