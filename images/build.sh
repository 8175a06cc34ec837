#!/usr/bin/env bash
# The flashable Raspberry Pi image: pincer-<version>-rpi-<board>.img.xz (+ .sha256).
#
#   images/build.sh [--board arm64|armhf|armel] [--deb PATH] [--tailscale PATH] [--out DIR]
#   images/build.sh [--board ...] --prerequisites   only install the host packages + qemu binfmt
#
# One recipe, three boards (--board, default arm64):
#   arm64  Pi 3, 4, Zero 2 W   Debian arm64, linux-image-arm64, the aarch64 glibc node
#   armhf  Pi 2 (and 3)        Debian armhf, linux-image-armmp, the armv7 glibc node
#   armel  Pi Zero / Zero W, 1 Debian armel, linux-image-rpi (the Pi 1 flavour, ARMv6), the
#                              static armv6 node (cross/deb.sh's armel package)
#
# Debian bookworm from Debian's packages only (mmdebstrap, main + non-free-firmware),
# Debian's kernel + raspi-firmware on a FAT boot partition, the pincer .deb (cross/deb.sh,
# built when missing) and the first-boot service (images/firstboot/).
# No loop devices, no mounts on the host: the FAT partition is made with mkfs.vfat + mcopy, the
# root with `mkfs.ext4 -d`, both joined with sfdisk/dd.
#
# Tailscale is not a Debian package: the image carries a pinned build of its own
# (scripts/install-tailnet.sh --board arm64|armv7|armv6, built with Go when missing, or --tailscale PATH),
# installed as /usr/sbin/tailscaled with the CLI /usr/bin/tailscale beside it, the daemon off
# until pincer.toml has a tailscale_authkey (images/firstboot/pincer-tailscale).
#
# Runs as an ordinary user: mmdebstrap --mode=unshare, and the second stage as "root" in a user
# namespace (`unshare --map-auto --map-root-user`), so the files' owners (root, _apt, pincer...)
# are what mkfs.ext4 writes into the image. That needs the user's /etc/subuid + /etc/subgid
# range (Debian's adduser makes one for every ordinary user), newuidmap (package uidmap) and
# qemu-aarch64 / qemu-arm registered with binfmt_misc with the F flag (package qemu-user-static
# does that).
# As root the same steps run with mmdebstrap --mode=root and a private mount namespace.
#
# Two stages, so a second run is fast:
#  1. the root file system from Debian packages (the slow part: maintainer scripts and
#     mkinitramfs under qemu-user). Cached as a tar in
#     ${PINCER_CACHE:-$HOME/.cache/pincer}/image/rootfs-<key>.tar, where <key> hashes
#     images/rootfs/* and the exact versions apt resolves for the package list (so a Debian
#     point release or security update rebuilds it; nothing else does). Downloaded .debs are
#     kept in .../image/debs/.
#  2. every run: the pincer .deb, the first-boot files and the settings in images/overlay/,
#     cleanup, partitions, image, xz.
#
# Output: $CARGO_TARGET_DIR/image/ (default target/image/) unless --out DIR.
# Environment: PINCER_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# PINCER_DEBIAN_SECURITY (default http://deb.debian.org/debian-security), PINCER_CACHE,
# PINCER_IMAGE_XZ (xz preset, default -6).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TARGET_DIR/image
DEB=
TAILSCALE_BIN=
PREREQ_ONLY=0
BOARD=arm64
while [ $# -gt 0 ]; do
  case "$1" in
    --board) BOARD=$2; shift 2 ;;
    --deb) DEB=$2; shift 2 ;;
    --tailscale) TAILSCALE_BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --prerequisites) PREREQ_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
CACHE=${PINCER_CACHE:-$HOME/.cache/pincer}/image
MIRROR=${PINCER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${PINCER_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
SUITE=bookworm
COMPONENTS="main non-free-firmware"
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
# per board: Debian architecture, qemu-user, kernel package, the node's build, Tailscale's
case "$BOARD" in
  arm64) ARCH=arm64 QEMU_USER=qemu-aarch64 KERNEL_PKG=linux-image-arm64 DEB_TARGET=aarch64-unknown-linux-gnu DEB_FILE=arm64 TS_BOARD=arm64 ;;
  armhf) ARCH=armhf QEMU_USER=qemu-arm KERNEL_PKG=linux-image-armmp DEB_TARGET=armv7-unknown-linux-gnueabihf DEB_FILE=armhf TS_BOARD=armv7 ;;
  armel) ARCH=armel QEMU_USER=qemu-arm KERNEL_PKG=linux-image-rpi DEB_TARGET=arm-unknown-linux-musleabihf=armel DEB_FILE=armel TS_BOARD=armv6 ;;
  *) echo "build.sh: --board is arm64, armhf or armel, not $BOARD" >&2; exit 2 ;;
esac
NAME=pincer-$VERSION-rpi-$BOARD
T0=$(date +%s)
log() { echo "image-build [$(( $(date +%s) - T0 ))s]: $*" >&2; }
die() { echo "image-build: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
if [ "$(id -u)" -eq 0 ]; then MODE=root; else MODE=unshare; fi

# --- host prerequisites ---------------------------------------------------------------------
# shellcheck source=../scripts/need.sh
. "$HERE/../scripts/need.sh"
# need installs without Recommends, so what a tool only recommends but this build uses is a
# need of its own: mmdebstrap refuses a foreign architecture without arch-test, and
# binfmt-support registers qemu-user-static where systemd-binfmt does not run (containers, CI).
# mmdebstrap's other Recommends are not used here: fakechroot/fakeroot (other modes), gpg (only
# to infer a signed-by; the host's Debian keyring is used), libdpkg-perl and
# libdistro-info-perl (keyrings of other vendors and old suites); mount (Priority: required)
# and uidmap are needs below.
for p in mmdebstrap:mmdebstrap arch-test:arch-test "$QEMU_USER-static:qemu-user-static" \
         update-binfmts:binfmt-support mkfs.vfat:dosfstools mcopy:mtools mkfs.ext4:e2fsprogs \
         sfdisk:fdisk xz:xz-utils dpkg-deb:dpkg unshare:util-linux mount:mount newuidmap:uidmap; do
  need "${p%%:*}" "${p#*:}" || exit 1
done
# qemu-user through binfmt_misc, so the board's maintainer scripts run in the chroot. The F flag
# (interpreter opened at registration) makes it work inside user namespaces and chroots.
BINFMT=/proc/sys/fs/binfmt_misc/$QEMU_USER
if [ "$MODE" = root ]; then
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e "$BINFMT" ] || update-binfmts --enable "$QEMU_USER" >&2 || die "cannot register $QEMU_USER with binfmt_misc"
else
  grep -q '^flags:.*F' "$BINFMT" 2>/dev/null \
    || die "$QEMU_USER is not registered with binfmt_misc (with the F flag): sudo update-binfmts --enable $QEMU_USER"
  for f in subuid subgid; do
    grep -qE "^($(id -un)|$(id -u)):" "/etc/$f" \
      || die "no /etc/$f range for $(id -un) (user namespaces need one): sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un)"
  done
  unshare --map-auto --map-root-user true 2>/dev/null \
    || die "cannot make a user namespace here (unshare --map-auto --map-root-user): enable unprivileged user namespaces or run as root"
fi
[ "$PREREQ_ONLY" = 0 ] || exit 0

# Work in RAM when there is room: fsync is free on tmpfs, and the root is rewritten often.
WORKBASE=${TMPDIR:-/tmp}
if [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -gt $((4 * 1024 * 1024)) ] 2>/dev/null; then
  WORKBASE=/dev/shm
fi
WORK=$(mktemp -d "$WORKBASE/pincer-image.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$CACHE/debs" "$OUT"

# --- stage 1: the root file system from Debian packages (cached) --------------------------
PACKAGES="$(sed 's/#.*//' "$HERE/rootfs/packages" | xargs) $KERNEL_PKG"
SOURCES="deb $MIRROR $SUITE $COMPONENTS
deb $MIRROR $SUITE-updates $COMPONENTS
deb $SECURITY $SUITE-security $COMPONENTS"

# Resolve the exact versions with a private apt (the board's lists in the cache, the host's apt
# state untouched): Priority required (what minbase installs) + the package list's closure.
APTD=$CACHE/apt-$ARCH
mkdir -p "$APTD/lists/partial" "$APTD/archives/partial"
printf '%s\n' "$SOURCES" >"$APTD/sources.list"
: >"$APTD/status"
APT_OPTS=(-o "Dir::State=$APTD" -o "Dir::State::Lists=$APTD/lists" -o "Dir::State::status=$APTD/status"
  -o "Dir::Cache=$APTD" -o "Dir::Cache::archives=$APTD/archives" -o "Dir::Etc::SourceList=$APTD/sources.list"
  -o "Dir::Etc::SourceParts=/nonexistent" -o "Dir::Etc::Preferences=$HERE/rootfs/apt-preferences"
  -o "Dir::Etc::PreferencesParts=/nonexistent" -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH"
  -o "APT::Install-Recommends=false" -o "Debug::NoLocking=1")
log "resolving package versions (apt-get update of the $ARCH lists)"
if ! apt-get "${APT_OPTS[@]}" update -qq >&2; then
  log "apt-get update failed: using the lists from the last run"
fi
REQUIRED=$(apt-cache "${APT_OPTS[@]}" dumpavail 2>/dev/null \
  | awk '/^Package:/ {p=$2} /^Priority: required/ {print p}' | sort -u | xargs || true)
[ -n "$REQUIRED" ] || die "no $ARCH package lists (offline on the first run?)"
# shellcheck disable=SC2086
RESOLVED=$(apt-get "${APT_OPTS[@]}" -s install $REQUIRED $PACKAGES 2>&1 | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p' | sort)
[ -n "$RESOLVED" ] || die "apt could not resolve the package list"
KEY=$( { printf '%s\n' "$SOURCES" "$RESOLVED"; cat "$HERE"/rootfs/*; sed -n '/^# --- stage 1/,/^# --- end of stage 1/p' "$0"; } | sha256sum | cut -c1-16)
ROOTTAR=$CACHE/rootfs-$ARCH-$KEY.tar
printf '%s\n' "$RESOLVED" >"$WORK/versions"
log "root file system key $KEY ($(wc -l <"$WORK/versions") packages)"

if [ ! -f "$ROOTTAR" ]; then
  log "building the root file system with mmdebstrap --mode=$MODE (the slow part: package scripts under qemu-user, ~3-5 min)"
  DPKG_PATHS=()
  while read -r l; do DPKG_PATHS+=("--dpkgopt=$l"); done < <(grep '^path-' "$HERE/rootfs/dpkg-paths")
  # shellcheck disable=SC2016
  TMPDIR=$WORKBASE mmdebstrap --mode="$MODE" --format=tar --arch="$ARCH" --variant=minbase \
    --include="$(echo "$PACKAGES" | tr ' ' ,)" \
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
    --dpkgopt=force-unsafe-io \
    "${DPKG_PATHS[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/ "$1"/etc/initramfs-tools/conf.d "$1"/usr/share/initramfs-tools/modules.d "$1"/etc/apt/preferences.d' \
    --setup-hook="upload '$HERE/rootfs/apt-preferences' /etc/apt/preferences.d/pincer" \
    --setup-hook="sync-in '$CACHE/debs' /var/cache/apt/archives/" \
    --setup-hook='chown -R 0:0 "$1"/var/cache/apt/archives' \
    --setup-hook="copy-in '$HERE/rootfs/initramfs.conf' /etc/initramfs-tools/conf.d/" \
    --setup-hook="copy-in '$HERE/rootfs/initramfs.modules' /usr/share/initramfs-tools/modules.d/" \
    --customize-hook="sync-out /var/cache/apt/archives '$CACHE/debs'" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    "$SUITE" "$ROOTTAR.part" "$SOURCES" >&2
  mv "$ROOTTAR.part" "$ROOTTAR"
  log "cached the root file system as $ROOTTAR"
  # keep the newest two roots per architecture
  ls -t "$CACHE"/rootfs-"$ARCH"-*.tar | tail -n +3 | xargs -r rm -f
else
  log "root file system cached"
fi
# --- end of stage 1

# --- the pincer .deb --------------------------------------------------------------------------
if [ -z "$DEB" ]; then
  DEB=$TARGET_DIR/deb/pincer_${VERSION}_${DEB_FILE}.deb
  if [ ! -f "$DEB" ]; then
    log "building $DEB (cross/deb.sh $DEB_TARGET)"
    CARGO_TARGET_DIR=$TARGET_DIR ./cross/deb.sh "$DEB_TARGET" >&2
  fi
fi
[ -f "$DEB" ] || die "no .deb at $DEB"
if [ -z "$TAILSCALE_BIN" ]; then
  log "the board's Tailscale (scripts/install-tailnet.sh --board $TS_BOARD; built once with Go)"
  TAILSCALE_BIN=$("$HERE/../scripts/install-tailnet.sh" --board "$TS_BOARD" | sed -n 's/^TAILSCALE_BOARD=//p')
fi
[ -f "$TAILSCALE_BIN" ] || die "no Tailscale build at $TAILSCALE_BIN"


# --- stage 2: pincer, first boot, settings (every run) ----------------------------------------
# Runs as root of its own mount namespace: as root, or - for an ordinary user - in a user
# namespace where the user is root and their subordinate ids are everybody else, so the
# unpacked files keep their owners and `mkfs.ext4 -d` writes them into the image. It leaves
# boot.vfat, root.ext4 and root.mb (the root partition's size) in $WORK; the unpacked root is
# removed inside the namespace (outside, its subordinate-id files could not be).
stage2() {
set -euo pipefail
R=$WORK/root
mkdir -p "$R"
trap 'umount "$R/dev/null" 2>/dev/null || true; rm -rf "$R" "$WORK/boot"' EXIT
log "unpacking the root file system"
# /dev stays empty (the kernel's devtmpfs is mounted over it on boot; device nodes cannot be made
# in a user namespace); the chroot gets /dev/null bound in for the package scripts
tar -C "$R" --numeric-owner --xattrs --xattrs-include='*' --exclude='./dev/*' -xf "$ROOTTAR"
touch "$R/dev/null"
mount --bind /dev/null "$R/dev/null"
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

log "installing $(basename "$DEB")"
cp "$DEB" "$R/tmp/pincer.deb"
in_root dpkg -i /tmp/pincer.deb >&2
rm -f "$R/tmp/pincer.deb"
PINCER_VERSION=$(in_root dpkg-query -W -f='${Version}' pincer)

log "first boot service and settings"
install -D -m 0755 "$HERE/firstboot/pincer-firstboot" "$R/usr/lib/pincer/pincer-firstboot"
install -D -m 0644 "$HERE/firstboot/pincer-firstboot.service" "$R/lib/systemd/system/pincer-firstboot.service"
install -D -m 0755 "$HERE/firstboot/pincer-report" "$R/usr/lib/pincer/pincer-report"
install -m 0644 "$HERE/firstboot/pincer-report.service" "$HERE/firstboot/pincer-report.timer" "$R/lib/systemd/system/"
install -D -m 0755 "$HERE/firstboot/pincer-tailscale" "$R/usr/lib/pincer/pincer-tailscale"
install -m 0644 "$HERE/firstboot/pincer-tailscale.service" "$R/lib/systemd/system/"
install -D -m 0755 "$TAILSCALE_BIN" "$R/usr/sbin/tailscaled"
ln -sfn ../sbin/tailscaled "$R/usr/bin/tailscale"
install -m 0644 "$HERE/firstboot/tailscaled.service" "$R/lib/systemd/system/"
install -D -m 0644 "$HERE/firstboot/tailscaled.default" "$R/etc/default/tailscaled"
TAILSCALE_VERSION=$(in_root tailscale version 2>/dev/null | head -1)
[ -n "$TAILSCALE_VERSION" ] || { echo "image-build: the Tailscale build does not run (tailscale version)" >&2; exit 1; }
install -D -m 0644 "$HERE/firstboot/pincer.toml" "$R/usr/share/pincer/pincer.toml.template"
cp -a --no-preserve=ownership "$HERE/overlay/." "$R/"
install -m 0644 "$R/usr/share/systemd/tmp.mount" "$R/etc/systemd/system/tmp.mount"
in_root systemctl enable pincer-firstboot.service systemd-networkd.service systemd-resolved.service \
  systemd-timesyncd.service tmp.mount pincer-node.service pincer-report.timer >&2 2>&1
# (pincer-firstboot is wanted by the boot partition's device, not by a target)
[ -L "$R/etc/systemd/system/dev-disk-by\x2dlabel-PINCER.device.wants/pincer-firstboot.service" ] \
  || { echo "image-build: pincer-firstboot.service is not wanted by the boot partition's device" >&2; exit 1; }
for u in ssh.service ssh.socket wpa_supplicant.service pincer-gateway.service apt-daily.timer \
         apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service; do
  [ ! -e "$R/lib/systemd/system/$u" ] || in_root systemctl disable "$u" >/dev/null 2>&1
done
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"
echo pincer >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpincer\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' >"$R/etc/hosts"
cat >"$R/etc/fstab" <<'FSTAB'
# Pincer image. noatime: reading never writes to the card; commit=30: ext4's journal commits
# every 30 s at most (the default 5 s writes more often, the data is as safe on power loss).
LABEL=pincer-root  /              ext4  defaults,noatime,commit=30,errors=remount-ro  0 1
# The boot partition: noauto, so nothing at boot waits for it; it is mounted by
# pincer-firstboot.service, which the partition's device starts whenever it appears (with the
# root, or late on a slow card).
LABEL=PINCER       /boot/firmware vfat  defaults,noatime,fmask=0077,dmask=0077,flush,noauto  0 2
FSTAB
# no node.toml until pincer.toml is applied: the node does not start on the package's default
# gateway (ConditionPathExists in overlay/.../pincer-node.service.d/pincer-image.conf)
rm -f "$R/etc/pincer/node.toml"
# the Pi firmware's kernel command line: root by label; the same for future kernel updates
sed -i 's/^#\?ROOTPART=.*/ROOTPART=LABEL=pincer-root/' "$R/etc/default/raspi-firmware"
grep -q '^ROOTPART=' "$R/etc/default/raspi-firmware" || echo 'ROOTPART=LABEL=pincer-root' >>"$R/etc/default/raspi-firmware"
# serial console on the GPIO UART and the screen: the mini UART ttyS1 where Bluetooth has the PL011 (Pi 3, 4,
# Zero W and Zero 2 W, with enable_uart=1), the PL011 ttyAMA0 on the Pi Zero, 1 and 2
CONSOLES="ttyS1,115200 tty0"
[ "$BOARD" = arm64 ] || CONSOLES="ttyAMA0,115200 ttyS1,115200 tty0"
sed -i "s/^#\\?CONSOLES=.*/CONSOLES=\"$CONSOLES\"/" "$R/etc/default/raspi-firmware"
sed -i "s/root=[^ ]*/root=LABEL=pincer-root/; s/console=tty0/$(printf 'console=%s ' $CONSOLES | sed 's/ $//')/" "$R/boot/firmware/cmdline.txt"
# the Zero's USB OTG port as Ethernet (overlay/.../30-usb-gadget.network gives it 10.55.0.1);
# the Pi 1's dwc2 is host-only and g_ether just finds no port
[ "$BOARD" != armel ] || echo g_ether >"$R/etc/modules-load.d/pincer-usb-gadget.conf"
# dpkg: no unsafe-io on the board (a power cut during apt must not leave empty files)
sed -i '/force-unsafe-io/d' "$R"/etc/dpkg/dpkg.cfg.d/* 2>/dev/null || true
# per-board identity: machine-id made by systemd on the first boot; no SSH host keys
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R/var/lib/systemd/random-seed" "$R"/etc/ssh/ssh_host_*
# what the board does not need: apt lists and caches (apt update on the board fetches them)
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/debconf/*-old \
  "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/* "$R"/var/tmp/*
mkdir -p "$R/var/lib/apt/lists/partial"
echo "pincer $PINCER_VERSION, image built $(date -u +%Y-%m-%d) from Debian $SUITE (rootfs $KEY), tailscale $TAILSCALE_VERSION" >"$R/etc/pincer/image-version"
cp "$WORK/versions" "$R/usr/share/pincer/image-packages.txt"

# the two file systems
log "boot partition (FAT32) and root file system (ext4)"
umount "$R/dev/null"
rm -f "$R/dev/null"
mkdir -p "$WORK/boot"
cp -a "$R/boot/firmware/." "$WORK/boot/"
rm -rf "${R:?}"/boot/firmware/*
cp "$HERE/firstboot/pincer.toml" "$WORK/boot/pincer.toml"
rm -f "$WORK/boot.vfat"
mkfs.vfat -F 32 -n PINCER -C "$WORK/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
(cd "$WORK/boot" && mcopy -s -p -m -i "$WORK/boot.vfat" ./* ::/)
ROOT_KB=$(du -sxk --apparent-size "$R" | cut -f1)
ROOT_MB=$(( (ROOT_KB * 115 / 100 + 64 * 1024) / 1024 ))  # +15 % +64 MiB: ext4 metadata, first logs
rm -f "$WORK/root.ext4"
mkfs.ext4 -q -F -L pincer-root -d "$R" -m 2 "$WORK/root.ext4" "${ROOT_MB}M" >&2
echo "$ROOT_MB $((ROOT_KB / 1024))" >"$WORK/root.mb"
}
BOOT_MB=256
export WORK ROOTTAR DEB TAILSCALE_BIN HERE KEY SUITE T0 BOOT_MB BOARD
if [ "$MODE" = root ]; then
  unshare --mount --propagation private bash -c "$(declare -f stage2 log); stage2"
else
  unshare --map-auto --map-root-user --mount bash -c "$(declare -f stage2 log); stage2"
fi
read -r ROOT_MB ROOT_FILES_MB <"$WORK/root.mb"

# --- partitions and image ---------------------------------------------------------------------
IMG=$OUT/$NAME.img
START_MB=4
TOTAL_MB=$((START_MB + BOOT_MB + ROOT_MB))
rm -f "$IMG" "$IMG.xz"
truncate -s "${TOTAL_MB}M" "$IMG"
sfdisk --quiet "$IMG" <<SFDISK
label: dos
label-id: 0x70696e63
start=${START_MB}MiB, size=${BOOT_MB}MiB, type=c, bootable
start=$((START_MB + BOOT_MB))MiB, type=83
SFDISK
dd if="$WORK/boot.vfat" of="$IMG" bs=1M seek=$START_MB conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$((START_MB + BOOT_MB)) conv=notrunc,sparse status=none
log "image $IMG: $TOTAL_MB MiB (boot $BOOT_MB MiB, root $ROOT_MB MiB with $ROOT_FILES_MB MiB of files)"
[ "$TOTAL_MB" -le 1024 ] || die "image is $TOTAL_MB MiB, over the 1 GiB budget"

log "compressing (xz ${PINCER_IMAGE_XZ:--6}, all cores)"
xz -T0 "${PINCER_IMAGE_XZ:--6}" -k -f "$IMG"
(cd "$OUT" && sha256sum "$NAME.img.xz" >"$NAME.img.xz.sha256")
XZ_BYTES=$(stat -c %s "$IMG.xz")
log "done: $IMG.xz ($((XZ_BYTES / 1000000)) MB), $IMG.xz.sha256"
[ "$XZ_BYTES" -le 250000000 ] || die "$IMG.xz is over the 250 MB budget"
echo "$IMG.xz"
