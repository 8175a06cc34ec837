#!/usr/bin/env bash
# Proves the test command installs what it needs: runs `.ci/run` on a clean clone inside a
# fresh Debian bookworm root made by mmdebstrap, with only what a new machine of this project's
# kind starts with (Debian's minimal base, gcc/make, git, curl, Python, and Rust by rustup at the
# host's version). Everything else — apt packages, rustup targets, the reference OpenClaw and
# its Node, the VM kernel, the image's Debian root — the test command must fetch itself.
#
#   sudo ./scripts/fresh-root.sh [ROOT_DIR]      (default /var/tmp/pincer-fresh-root)
#
# The host's /dev (for /dev/kvm and /dev/net/tun), /proc and /sys are bound into the root, so
# network namespaces and the VMs work as on a machine; nothing else of the host is visible.
# Prints the elapsed time; the whole log is ROOT_DIR.log. ../shared is copied beside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "fresh-root: needs root (mmdebstrap, chroot, mounts)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "fresh-root: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }

ROOT=${1:-/var/tmp/pincer-fresh-root}
LOG=$ROOT.log
SHARED=$(cd .. && pwd)/shared
RUST=$(rustc --version | awk '{print $2}')
MIRROR=${PINCER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ -d "$SHARED" ] || { echo "fresh-root: no $SHARED beside the checkout" >&2; exit 1; }

say() { printf 'fresh-root [%ss]: %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$LOG" >&2; }
unmount() { # every mount below the root, deepest first
  local m
  for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}
trap unmount EXIT
T0=$(date +%s)
: >"$LOG"

unmount
rm -rf "$ROOT"
say "mmdebstrap bookworm (minbase + the new machine's basics) into $ROOT"
mmdebstrap --variant=minbase \
  --include=ca-certificates,curl,git,build-essential,python3 \
  bookworm "$ROOT" "$MIRROR" >>"$LOG" 2>&1

say "the clean clone of HEAD ($(git rev-parse --short HEAD)) and ../shared"
mkdir -p "$ROOT/work"
git clone -q --no-local . "$ROOT/work/main"
cp -a "$SHARED" "$ROOT/work/shared"

# The machine's own trust (a new machine of this kind has its network's CAs installed and the
# variables that point tools at them): the same CAs and variables, nothing of the project's.
if [ -d /usr/local/share/ca-certificates ]; then
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >>"$LOG" 2>&1
fi
machine_env=()
for v in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO NODE_EXTRA_CA_CERTS PIP_CERT \
  REQUESTS_CA_BUNDLE http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && machine_env+=("$v=${!v}")
done

# the root is a mount point of its own, as / is on a machine (`ip -n` makes / a slave mount in
# a new mount namespace, which fails on a plain folder)
mount --bind "$ROOT" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
mount -t tmpfs tmpfs "$ROOT/run"
mount -t tmpfs tmpfs "$ROOT/dev/shm"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 "${machine_env[@]}" \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

say "Rust $RUST by rustup (default profile)"
in_root sh -c "curl -sSf https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init -o /tmp/rustup-init \
  && chmod +x /tmp/rustup-init && /tmp/rustup-init -y -q --profile default --default-toolchain $RUST" >>"$LOG" 2>&1

say "running .ci/run (log: $LOG)"
T1=$(date +%s)
rc=0
in_root bash -c 'cd /work/main && ./.ci/run' >>"$LOG" 2>&1 || rc=$?
say ".ci/run exited $rc after $(( $(date +%s) - T1 ))s (the root took $(( T1 - T0 ))s to make)"
tail -n 30 "$LOG" >&2
exit "$rc"
