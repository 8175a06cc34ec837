#!/bin/bash
# Build a tiny x86-64 VM (Debian's real kernel + busybox initramfs) for the hardware tests.
#
#   tests/vm/build.sh OUT_DIR NODE_BINARY [EXTRA_FILE...]
#
# Produces OUT_DIR/vmlinuz and OUT_DIR/initrd.gz. NODE_BINARY (a static binary) becomes
# /bin/pincer-node; each EXTRA_FILE is copied to /extra/<basename>, or to an absolute path in
# the guest when given as SRC:/guest/path. Downloads (apt-get download, never installed on the
# host) are cached in ${PINCER_CACHE:-$HOME/.cache/pincer}/vm/<package>_<version>/.
# With PINCER_VM_M2M=1 the initramfs also gets v4l2-mem2mem + vicodec (not in Debian's kernel;
# built out of tree by media-modules.sh), loaded after vivid so vivid stays /dev/video0. With
# PINCER_VM_LIBCAMERA=1 it gets vimc (also built by media-modules.sh) and Debian's libcamera
# with `cam` (libcamera.sh).
# See tests/vm/README.md for the boot line and what the guest provides.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR NODE_BINARY [EXTRA_FILE|SRC:/guest/path ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
OUT=$1; NODE=$2; shift 2
[ -f "$NODE" ] || { echo "build.sh: NODE_BINARY '$NODE' not found" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${PINCER_CACHE:-$HOME/.cache/pincer}/vm
log() { echo "vm-build: $*" >&2; }

SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

# --- host prerequisites -------------------------------------------------------------------
APT_UPDATED=
apt_update() { [ -n "$APT_UPDATED" ] || { log "apt-get update"; $SUDO apt-get update -qq >&2; APT_UPDATED=1; }; }
# shellcheck source=../../scripts/need.sh
. "$HERE/../../scripts/need.sh"
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need xz xz-utils
need zstd zstd
need gzip gzip
need dpkg-deb dpkg

# --- package resolution + cached download -------------------------------------------------
# candidate version of a package from the local apt lists ('' when unknown)
candidate() { apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -1; }
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1
}

# fetch PKG -> prints the unpacked root dir (cached: a second run downloads nothing)
fetch() {
  local pkg=$1 ver dir deb
  ver=$(candidate "$pkg")
  if [ -z "$ver" ]; then apt_update; ver=$(candidate "$pkg"); fi
  if [ -z "$ver" ]; then
    # offline / no lists: fall back to the newest cached copy
    dir=$(ls -d "$CACHE/${pkg}_"*/root 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$dir" ] && [ -e "$dir/../.unpacked" ] || { log "cannot resolve $pkg"; return 1; }
    log "using cached $(basename "$(dirname "$dir")") (apt has no candidate)"
    echo "$dir"; return
  fi
  dir=$CACHE/${pkg}_${ver//:/%3a}
  if [ ! -e "$dir/.unpacked" ]; then
    mkdir -p "$dir"
    if ! ls "$dir"/*.deb >/dev/null 2>&1; then
      log "downloading $pkg $ver"
      # apt-get download only fetches the .deb; nothing is installed on the host
      (cd "$dir" && apt-get download -q "$pkg=$ver" >&2 2>/dev/null) \
        || { apt_update; (cd "$dir" && apt-get download -q "$pkg=$ver" >&2); }
      # apt may chown its downloads to _apt; make the cache ours
      [ -z "$SUDO" ] || $SUDO chown -R "$(id -u):$(id -g)" "$dir"
    fi
    deb=$(ls "$dir"/*.deb | head -1)
    rm -rf "$dir/root"; log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$dir/root"
    touch "$dir/.unpacked"
  fi
  echo "$dir/root"
}

KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then apt_update; KPKG=$(kernel_pkg); fi
if [ -z "$KPKG" ]; then
  KPKG=$(ls -d "$CACHE"/linux-image-6.1.0-*-amd64_* 2>/dev/null | sort -V | tail -1 | xargs -r basename | sed 's/_.*//')
fi
[ -n "$KPKG" ] || { log "cannot resolve the kernel package (linux-image-amd64's dependency)"; exit 1; }
KROOT=$(fetch "$KPKG")
BROOT=$(fetch busybox-static)
AROOT=$(fetch libasound2-data)   # /usr/share/alsa: alsa-lib's config, needed by a static alsa-lib
KVER=$(ls "$KROOT/lib/modules" | head -1)
MODDIR=$KROOT/lib/modules/$KVER
log "kernel $KPKG ($KVER)"

# --- staging tree -------------------------------------------------------------------------
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/pincer-vm.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,mods,extra,usr/share}
cp "$BROOT/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp -a "$AROOT/usr/share/alsa" "$R/usr/share/alsa"
install -m 0755 "$NODE" "$R/bin/pincer-node"
install -m 0755 "$HERE/init" "$R/init"
echo "127.0.0.1 localhost" > "$R/etc/hosts"
echo "root:x:0:0:root:/tmp:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"
echo "$KVER" > "$R/etc/pincer-vm-kernel"

for x in "$@"; do
  case $x in
    *:/*) src=${x%%:/*}; dst=$R/${x#*:/} ;;
    *)    src=$x; dst=$R/extra/$(basename "$x") ;;
  esac
  [ -e "$src" ] || { log "EXTRA_FILE '$src' not found"; exit 2; }
  mkdir -p "$(dirname "$dst")"; cp -a "$src" "$dst"
done

# --- kernel modules, dependencies first ---------------------------------------------------
# Index every module file by its normalised name (dashes -> underscores), read `depends=` from
# its .modinfo (no kmod/depmod needed), and emit a load list in dependency order.
declare -A MODFILE SEEN
while IFS= read -r f; do
  n=${f##*/}; n=${n%.xz}; n=${n%.zst}; n=${n%.gz}; n=${n%.ko}; n=${n//-/_}
  MODFILE[$n]=$f
done < <(find "$MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
OOT=()
if [ "${PINCER_VM_M2M:-0}" = 1 ] || [ "${PINCER_VM_LIBCAMERA:-0}" = 1 ]; then
  # out-of-tree v4l2-mem2mem.ko, vicodec.ko and vimc.ko for this very kernel package (cached
  # after one build)
  KVERSION=$(basename "$(dirname "$KROOT")"); KVERSION=${KVERSION#"${KPKG}_"}; KVERSION=${KVERSION//%3a/:}
  PINCER_VM_KPKG=$KPKG PINCER_VM_KVERSION=$KVERSION "$HERE/media-modules.sh" "$STAGE/oot"
  MODFILE[v4l2_mem2mem]=$STAGE/oot/v4l2-mem2mem.ko
  MODFILE[vicodec]=$STAGE/oot/vicodec.ko
  MODFILE[vimc]=$STAGE/oot/vimc.ko
  [ "${PINCER_VM_M2M:-0}" = 1 ] && OOT+=(vicodec)
  [ "${PINCER_VM_LIBCAMERA:-0}" = 1 ] && OOT+=(vimc)
fi
if [ "${PINCER_VM_LIBCAMERA:-0}" = 1 ]; then
  # cam, libcamera, its vimc IPA and their shared libraries (~34 MB)
  "$HERE/libcamera.sh" "$R"
fi

ORDER=()
modcat() {
  case $1 in
    *.xz) xz -dc "$1" ;; *.zst) zstd -qdc "$1" ;; *.gz) gzip -dc "$1" ;; *) cat "$1" ;;
  esac
}
resolve() {
  local n=${1//-/_} f deps d
  [ -z "${SEEN[$n]:-}" ] || return 0
  SEEN[$n]=1
  f=${MODFILE[$n]:-}
  if [ -z "$f" ]; then
    # built into the kernel (modules.builtin) is fine; anything else is an error
    if grep -q "/${1//_/[-_]}\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then return 0; fi
    log "module $1 not found"; return 1
  fi
  modcat "$f" > "$STAGE/m.ko"
  deps=$(tr '\0' '\n' < "$STAGE/m.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
  for d in $deps; do resolve "$d"; done
  modcat "$f" > "$R/mods/$n.ko"
  ORDER+=("$n")
}
# Load order matters for numbering: snd_aloop = ALSA card 0, snd_dummy = card 1;
# bochs before vfb so the bochs-display is /dev/fb0 (vfb, if loaded, becomes fb1);
# vicodec (PINCER_VM_M2M=1) and vimc (PINCER_VM_LIBCAMERA=1) last, after vivid, so vivid's
# capture node stays /dev/video0.
WANT=(virtio_pci virtio_net snd_aloop snd_dummy vivid bochs vfb "${OOT[@]}")
for m in "${WANT[@]}"; do resolve "$m"; done
printf '%s\n' "${ORDER[@]}" > "$R/mods/order"
log "modules: ${ORDER[*]}"

# --- kernel + initramfs -------------------------------------------------------------------
mkdir -p "$OUT"
cp "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$OUT/initrd.gz.tmp"
mv "$OUT/initrd.gz.tmp" "$OUT/initrd.gz"
log "wrote $OUT/vmlinuz ($(stat -c %s "$OUT/vmlinuz") B) and $OUT/initrd.gz ($(stat -c %s "$OUT/initrd.gz") B)"
