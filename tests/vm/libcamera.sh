#!/bin/bash
# Put Debian's libcamera userland into the test VM's root: `cam` (libcamera-tools), libcamera
# with its vimc IPA module (ipa_vimc.so, its signature, the vimc_ipa_proxy worker and
# vimc.conf), and every shared library these load, with the dynamic loader.
#
#   tests/vm/libcamera.sh ROOT
#
# The libraries are the host's (the VM boots Debian's amd64 kernel; the host is the same Debian
# release), so their packages are installed on the host: libcamera-tools' own dependencies
# without Qt (qcam's; `cam` does not load it) and libcamera-ipa. libcamera-tools itself is only
# downloaded (apt-get download, cached in ${PINCER_CACHE:-$HOME/.cache/pincer}/vm/) and `cam`
# taken out of it, so the host gets no Qt. build.sh runs this with PINCER_VM_LIBCAMERA=1.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 ROOT" >&2; exit 2; }
R=$1
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${PINCER_CACHE:-$HOME/.cache/pincer}/vm
log() { echo "vm-libcamera: $*" >&2; }
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# shellcheck source=../../scripts/need.sh
. "$HERE/../../scripts/need.sh"
need ldd libc-bin
need dpkg-deb dpkg

MULTIARCH=x86_64-linux-gnu
LCDIR=/usr/lib/$MULTIARCH/libcamera

# --- host packages: the libraries cam and libcamera load ----------------------------------
ver=$(apt-cache show --no-all-versions libcamera-tools 2>/dev/null | sed -n 's/^Version: //p' | head -1)
if [ -z "$ver" ]; then $SUDO apt-get update -qq >&2; ver=$(apt-cache show --no-all-versions libcamera-tools | sed -n 's/^Version: //p' | head -1); fi
[ -n "$ver" ] || { log "apt knows no libcamera-tools"; exit 1; }
mapfile -t pkgs < <(apt-cache depends libcamera-tools | sed -n 's/^ *|\{0,1\}Depends: \([^<][^ ]*\)$/\1/p' | grep -v '^libqt' | sort -u)
pkgs+=(libcamera-ipa)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -qq >&2; $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
for f in "$LCDIR/ipa_vimc.so" "$LCDIR/ipa_vimc.so.sign" "$LCDIR/vimc_ipa_proxy" /usr/share/libcamera/ipa/vimc/vimc.conf; do
  [ -e "$f" ] || { log "$f missing after installing libcamera-ipa"; exit 1; }
done

# --- cam, out of the downloaded libcamera-tools --------------------------------------------
dir=$CACHE/libcamera-tools_${ver//:/%3a}
if [ ! -x "$dir/cam" ]; then
  mkdir -p "$dir"
  if ! ls "$dir"/*.deb >/dev/null 2>&1; then
    log "downloading libcamera-tools $ver"
    (cd "$dir" && apt-get download -q "libcamera-tools=$ver" >&2)
    [ -z "$SUDO" ] || $SUDO chown -R "$(id -u):$(id -g)" "$dir"
  fi
  rm -rf "$dir/x"; dpkg-deb -x "$(ls "$dir"/*.deb | head -1)" "$dir/x"
  cp "$dir/x/usr/bin/cam" "$dir/cam.tmp" && mv "$dir/cam.tmp" "$dir/cam"
  rm -rf "$dir/x"
fi

# --- into the root -------------------------------------------------------------------------
mkdir -p "$R/usr/bin" "$R$LCDIR" "$R/usr/share/libcamera/ipa"
install -m 0755 "$dir/cam" "$R/usr/bin/cam"
cp -L "$LCDIR/ipa_vimc.so" "$LCDIR/ipa_vimc.so.sign" "$LCDIR/vimc_ipa_proxy" "$R$LCDIR/"
cp -a /usr/share/libcamera/ipa/vimc "$R/usr/share/libcamera/ipa/"
# Every library the three load (ldd: the whole closure), at the path the loader found it,
# plus the loader itself.
libs=$(for f in "$dir/cam" "$LCDIR/ipa_vimc.so" "$LCDIR/vimc_ipa_proxy"; do
         out=$(LC_ALL=C ldd "$f")
         if grep -q 'not found' <<<"$out"; then log "$f: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"; exit 1; fi
         awk '/=> \//{print $3} /^[ \t]*\/[^ ]*ld-linux/{print $1}' <<<"$out"
       done | sort -u)
n=0
while read -r lib; do
  [ -e "$R$lib" ] && continue
  mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; n=$((n + 1))
done <<<"$libs"
[ -e "$R/lib64/ld-linux-x86-64.so.2" ] || { log "no dynamic loader was copied"; exit 1; }
log "cam $ver, the vimc IPA and $n libraries ($(du -sh "$R/lib" "$R/usr/lib" 2>/dev/null | awk '{print $1}' | paste -sd+ -))"
