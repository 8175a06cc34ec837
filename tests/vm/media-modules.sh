#!/bin/bash
# Build the media test drivers the test VM's Debian kernel lacks as out-of-tree modules: the
# V4L2 mem2mem framework (v4l2-mem2mem.ko) with the vicodec virtual FWHT codec (vicodec.ko), and
# the vimc virtual media controller camera (vimc.ko: sensor, debayer, scaler and capture
# entities in a media graph, the shape of a Pi's CSI camera that libcamera drives).
# CONFIG_V4L2_MEM2MEM_DEV, CONFIG_VIDEO_VICODEC and CONFIG_VIDEO_VIMC are unset in
# linux-image-6.1.0-*-amd64.
#
#   tests/vm/media-modules.sh OUT_DIR  -> OUT_DIR/v4l2-mem2mem.ko OUT_DIR/vicodec.ko OUT_DIR/vimc.ko
#
# The kernel is the one build.sh boots: PINCER_VM_KPKG / PINCER_VM_KVERSION (set by build.sh),
# else linux-image-amd64's dependency and its apt candidate, else the newest cached copy.
# Downloads (apt-get download, never installed on the host) go to
# ${PINCER_CACHE:-$HOME/.cache/pincer}/vm/<package>_<version>/: the kernel's headers with
# linux-headers-*-common and linux-kbuild-* (all three unpacked into the headers' root/, so that
# `make -C root/usr/src/linux-headers-<krel> M=...` works from the cache), and linux-source-X.Y
# (only v4l2-mem2mem.c, test-drivers/vicodec/ and test-drivers/vimc/ are kept; the 139 MB .deb
# is deleted). The built, debug-stripped modules are cached in
# vm/media-modules_<krel>_<version>/: a second run
# builds and downloads nothing. See tests/vm/README.md.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${PINCER_CACHE:-$HOME/.cache/pincer}/vm
log() { echo "media-modules: $*" >&2; }

SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=
apt_update() { [ -n "$APT_UPDATED" ] || { log "apt-get update"; $SUDO apt-get update -qq >&2; APT_UPDATED=1; }; }

# --- the kernel (same resolution as build.sh) ---------------------------------------------
candidate() { apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -1; }
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1
}
newest_cached() { # newest_cached GLOB -> basename of the newest matching cache dir ('' if none)
  local d
  d=$(find "$CACHE" -maxdepth 1 -name "$1" 2>/dev/null | sort -V | tail -1 || true)
  [ -z "$d" ] || basename "$d"
}
KPKG=${PINCER_VM_KPKG:-}
if [ -z "$KPKG" ]; then KPKG=$(kernel_pkg); fi
if [ -z "$KPKG" ]; then apt_update; KPKG=$(kernel_pkg); fi
if [ -z "$KPKG" ]; then KPKG=$(newest_cached 'linux-image-6.1.0-*-amd64_*'); KPKG=${KPKG%%_*}; fi
[ -n "$KPKG" ] || { log "cannot resolve the kernel package (linux-image-amd64's dependency)"; exit 1; }
KVERSION=${PINCER_VM_KVERSION:-}
if [ -z "$KVERSION" ]; then KVERSION=$(candidate "$KPKG"); fi
if [ -z "$KVERSION" ]; then apt_update; KVERSION=$(candidate "$KPKG"); fi
if [ -z "$KVERSION" ]; then KVERSION=$(newest_cached "${KPKG}_*"); KVERSION=${KVERSION#*_}; KVERSION=${KVERSION//%3a/:}; fi
[ -n "$KVERSION" ] || { log "cannot resolve the version of $KPKG"; exit 1; }
KREL=${KPKG#linux-image-}            # 6.1.0-57-amd64
FLAVOUR=${KREL##*-}                  # amd64
KABI=${KREL%-"$FLAVOUR"}             # 6.1.0-57
SERIES=$(echo "$KREL" | cut -d. -f1,2) # 6.1
VDIR=${KVERSION//:/%3a}
HPKG=linux-headers-$KREL; CPKG=linux-headers-$KABI-common; BPKG=linux-kbuild-$SERIES; SPKG=linux-source-$SERIES
log "kernel $KPKG $KVERSION ($KREL)"

BUILT=$CACHE/media-modules_${KREL}_$VDIR
MODS=(v4l2-mem2mem.ko vicodec.ko vimc.ko)

if [ ! -e "$BUILT/.built" ]; then
  # shellcheck source=../../scripts/need.sh
  . "$HERE/../../scripts/need.sh"
  need dpkg-deb dpkg
  need xz xz-utils
  need make make
  need strip binutils
  need gcc-12 gcc-12    # the kernel's CONFIG_CC_VERSION_TEXT (checked below)

  # download PKG: DEB=the .deb of PKG=$KVERSION, in $CACHE/PKG_VERSION/ (cached)
  DEB=
  download() {
    local pkg=$1 dir=$CACHE/${1}_$VDIR
    DEB=$(find "$dir" -maxdepth 1 -name '*.deb' 2>/dev/null | head -1 || true)
    if [ -z "$DEB" ]; then
      mkdir -p "$dir"
      log "downloading $pkg $KVERSION"
      # apt-get download only fetches the .deb; nothing is installed on the host
      (cd "$dir" && apt-get download -q "$pkg=$KVERSION" >&2 2>/dev/null) \
        || { apt_update; (cd "$dir" && apt-get download -q "$pkg=$KVERSION" >&2); }
      [ -z "$SUDO" ] || $SUDO chown -R "$(id -u):$(id -g)" "$dir"
      DEB=$(find "$dir" -maxdepth 1 -name '*.deb' | head -1)
    fi
    [ -n "$DEB" ] || { log "no .deb of $pkg $KVERSION"; exit 1; }
  }

  # --- headers + kbuild, unpacked into one root ---------------------------------------------
  HROOT=$CACHE/${HPKG}_$VDIR/root
  if [ ! -e "$HROOT/../.unpacked" ]; then
    debs=()
    for p in "$HPKG" "$CPKG" "$BPKG"; do download "$p"; debs+=("$DEB"); done
    rm -rf "$HROOT"
    for d in "${debs[@]}"; do log "unpacking $(basename "$d")"; dpkg-deb -x "$d" "$HROOT"; done
    # Debian's scripts/ and tools/ links are relative (../../lib/linux-kbuild-X.Y/...) and resolve
    # inside this root; the absolute ones are the flavour Makefile's include of the -common
    # Makefile and lib/modules/<krel>/{build,source}.
    sed -i "s|^include /usr/src/$CPKG/Makefile\$|include \$(dir \$(lastword \$(MAKEFILE_LIST)))../$CPKG/Makefile|" \
      "$HROOT/usr/src/$HPKG/Makefile"
    grep -q "^include \$(dir" "$HROOT/usr/src/$HPKG/Makefile" \
      || { log "unexpected $HPKG Makefile: $(cat "$HROOT/usr/src/$HPKG/Makefile")"; exit 1; }
    ln -sfn "../../../usr/src/$HPKG" "$HROOT/lib/modules/$KREL/build"
    ln -sfn "../../../usr/src/$CPKG" "$HROOT/lib/modules/$KREL/source"
    for l in scripts tools; do
      [ -e "$HROOT/usr/src/$HPKG/$l/" ] || { log "$HPKG/$l does not resolve"; exit 1; }
    done
    touch "$HROOT/../.unpacked"
  fi
  KDIR=$HROOT/usr/src/$HPKG
  want_cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$KDIR/.config")
  have_cc=$(gcc-12 --version | head -1)
  [ "$want_cc" = "$have_cc" ] || log "warning: kernel built with '$want_cc', host has '$have_cc'"

  # --- the two source files/dirs out of linux-source-X.Y --------------------------------------
  SRC=$CACHE/${SPKG}_$VDIR/src
  if [ ! -e "$SRC/../.extracted-vimc" ]; then
    download "$SPKG"; deb=$DEB
    rm -rf "$SRC"; mkdir -p "$SRC"
    log "extracting v4l2-mem2mem.c, vicodec/ and vimc/ from $(basename "$deb")"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$SPKG.tar.xz" \
      | tar -xJf - -C "$SRC" --strip-components=1 --wildcards \
          "$SPKG/drivers/media/v4l2-core/v4l2-mem2mem.c" "$SPKG/drivers/media/test-drivers/vicodec/*" \
          "$SPKG/drivers/media/test-drivers/vimc/*"
    [ -f "$SRC/drivers/media/v4l2-core/v4l2-mem2mem.c" ] && [ -f "$SRC/drivers/media/test-drivers/vicodec/Makefile" ] \
      && [ -f "$SRC/drivers/media/test-drivers/vimc/Makefile" ] \
      || { log "sources not found in $deb"; exit 1; }
    touch "$SRC/../.extracted-vimc"
    rm -f "$deb"   # 139 MB; only the extracted files are needed
  fi

  # --- build ------------------------------------------------------------------------------
  rm -rf "$BUILT"; mkdir -p "$BUILT/v4l2-mem2mem" "$BUILT/vicodec" "$BUILT/vimc"
  cp "$SRC/drivers/media/v4l2-core/v4l2-mem2mem.c" "$BUILT/v4l2-mem2mem/"
  echo 'obj-m += v4l2-mem2mem.o' > "$BUILT/v4l2-mem2mem/Makefile"
  cp "$SRC/drivers/media/test-drivers/vicodec/"*.[ch] "$BUILT/vicodec/"
  # upstream: "vicodec-objs := ...", "obj-$(CONFIG_VIDEO_VICODEC) += vicodec.o"
  grep '^vicodec-objs' "$SRC/drivers/media/test-drivers/vicodec/Makefile" > "$BUILT/vicodec/Makefile"
  echo 'obj-m += vicodec.o' >> "$BUILT/vicodec/Makefile"
  cp "$SRC/drivers/media/test-drivers/vimc/"*.[ch] "$BUILT/vimc/"
  # upstream: "vimc-y := vimc-core.o ... \" (continued), "obj-$(CONFIG_VIDEO_VIMC) += vimc.o"
  sed 's/^obj-\$(CONFIG_VIDEO_VIMC)/obj-m/' "$SRC/drivers/media/test-drivers/vimc/Makefile" > "$BUILT/vimc/Makefile"
  grep -q '^obj-m += vimc.o' "$BUILT/vimc/Makefile" || { log "unexpected vimc/Makefile"; exit 1; }
  kmake() { # kmake DIR [VAR=...]: out-of-tree `make modules` against the cached headers
    local dir=$1; shift
    make -s -C "$KDIR" M="$dir" CC=gcc-12 "$@" modules > "$dir/build.log" 2>&1 \
      || { cat "$dir/build.log" >&2; log "build in $dir failed"; exit 1; }
  }
  log "building v4l2-mem2mem.ko"
  kmake "$BUILT/v4l2-mem2mem"
  log "building vicodec.ko (v4l2_m2m_* from v4l2-mem2mem's Module.symvers)"
  kmake "$BUILT/vicodec" KBUILD_EXTRA_SYMBOLS="$BUILT/v4l2-mem2mem/Module.symvers"
  # vimc uses the in-kernel v4l2-tpg, videobuf2-vmalloc and the subdev API (all in Debian's kernel)
  log "building vimc.ko"
  kmake "$BUILT/vimc"
  for m in "${MODS[@]}"; do
    strip --strip-debug -o "$BUILT/$m" "$BUILT/${m%.ko}/$m"
    vermagic=$(tr '\0' '\n' < "$BUILT/$m" | sed -n 's/^vermagic=//p' | head -1)
    case $vermagic in "$KREL "*) ;; *) log "$m: vermagic '$vermagic' is not $KREL"; exit 1 ;; esac
  done
  touch "$BUILT/.built"
else
  log "cached $BUILT"
fi

mkdir -p "$OUT"
for m in "${MODS[@]}"; do cp "$BUILT/$m" "$OUT/$m"; done
for m in "${MODS[@]}"; do log "wrote $OUT/$m ($(stat -c %s "$OUT/$m") B)"; done
