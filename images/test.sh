#!/usr/bin/env bash
# Boot test of the SD image under qemu (TCG): a board that joins its gateway by itself on
# first boot.
#
#   images/test.sh [--board arm64|armhf|armel] [--machine raspi0|raspi1ap|raspi2b] [--image PATH.img]
#                  [--deadline SECONDS] [--tailnet-only]
#
# --board (default arm64) picks the image (images/build.sh --board) and the machine: arm64 on
# `-M virt -cpu cortex-a72` (below); armel (Pi Zero / 1) on `-M raspi0` and armhf (Pi 2) on
# `-M raspi2b` (--machine raspi1ap: the armel image on a Pi 1 A+), each with the image's own
# kernel, initrd and the board's device tree from its
# FAT partition, less one register range qemu does not model (the power manager's AXI bridge,
# whose probe otherwise takes an external abort), the card as the SD card and qemu's usb-net
# on the Pi's USB port. The 32-bit boards run steps 1-7 (tailnet, failure and slow-card
# scenarios are arm64's), plus system.which and the used memory with the node running.
#
# 1. builds the image (images/build.sh; the Debian root is cached) unless --image is given;
# 2. on a copy (grown to 2 GiB, like a bigger card): writes a pincer.toml to the FAT partition
#    with mcopy (gateway ws://10.0.2.2:PORT, a setup code, caps, hostname, time zone, Wi-Fi,
#    an SSH key), and - test-only, in the copy's root with debugfs, never in the shipped image -
#    loads vivid + snd-aloop, points gpsd at a TCP NMEA feed on the host, forwards the journal
#    to the serial console and masks systemd-timesyncd (the guest talks to 10.0.2.2 only);
#    before that, images/check-owners: every inode of the root is owned by an account of the
#    image (the unprivileged build's id mapping left no host ids behind);
# 3. starts pincer-gateway on the host's 127.0.0.1 (the guest reaches it as 10.0.2.2; the Host
#    header makes it a remote client, so the setup code is what admits it) and a TCP feed of
#    tests/nmea/berlin.nmea;
# 4. boots the image's own kernel and initrd (taken from its FAT partition) with
#    `-M virt -cpu cortex-a72`, root=/dev/vda2, user-mode networking;
# 5. checks, within the deadline: the node pairs by itself and is listed; after
#    `nodes approve`: location.get (Berlin), camera.snap (vivid) and audio.record (snd-aloop);
# 6. cuts the power (kills qemu), reads the FAT partition back: pincer-applied.txt present,
#    pincer-error.txt absent, secrets gone from pincer.toml, root grown; and the root with
#    debugfs: a machine-id and SSH host keys made on the board (on disk despite the power cut),
#    pincer-gateway not enabled, no journal on the card;
# 7. boots again: first-boot work is not repeated and the node reconnects with its saved
#    identity (no new pairing);
# 8. a malformed pincer.toml: the board boots with its previous settings, pincer-error.txt names
#    the bad line; fixed (and gateway_service = true): applied on the next boot, the error file
#    is gone, pincer-gateway enabled;
# 9. an unreachable gateway: the board boots, the node keeps retrying, pincer-report writes
#    pincer-error.txt naming the gateway; the gateway fixed: the node is back with its device
#    token and the report is removed;
# 10. a slow card: a fresh copy whose FAT partition is missing from the partition table and is
#    hot-plugged as a second disk (qemu monitor, device_add) once the board has booted without
#    it: pincer-node does not start on defaults meanwhile, and pincer.toml is applied (the
#    node restarted, paired, listed) when the partition appears.
# 11. (first, on a card of its own) tailscale_authkey and tailscale_login_server: a real
#    tailnet on this host (headscale on a bridge of our own, a namespace "pi" running
#    pincer-gateway `bind = "tailnet"`: board_tailnet_for_the_image_test in
#    gateway/tests/tailnet.rs, on tests/support/tailnet.rs); the board joins it at first boot
#    with the Tailscale the image carries (no download), its node pairs with a setup code over
#    the gateway's tailnet address (it listens nowhere else) and answers system.which; the auth
#    key is gone from the card afterwards; a second boot comes back over the tailnet without
#    it; deleted from the control server and given the key again, a third boot joins anew.
#    --tailnet-only runs these boots alone.
# Every wait is for a condition (console line, node listed) up to the deadline, never a fixed
# time. Prints the time from power-on to the node listed. Installs its own prerequisites.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
IMG=
DEADLINE=900
TAILNET_ONLY=
BOARD=arm64
MACHINE=
while [ $# -gt 0 ]; do
  case "$1" in
    --board) BOARD=$2; shift 2 ;;
    --machine) MACHINE=$2; shift 2 ;;
    --tailnet-only) TAILNET_ONLY=1; shift ;;
    --image) IMG=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$BOARD" in
  arm64) MACHINE=virt ;;
  armel) MACHINE=${MACHINE:-raspi0} ;;
  armhf) MACHINE=${MACHINE:-raspi2b} ;;
  *) echo "test.sh: --board is arm64, armhf or armel, not $BOARD" >&2; exit 2 ;;
esac
case "$BOARD/$MACHINE" in
  arm64/virt) ;;
  armel/raspi0) DTB_NAME=bcm2835-rpi-zero.dtb ;;
  armel/raspi1ap) DTB_NAME=bcm2835-rpi-a-plus.dtb ;;
  armhf/raspi2b) DTB_NAME=bcm2836-rpi-2-b.dtb ;;
  *) echo "test.sh: no $MACHINE for --board $BOARD (armel: raspi0, raspi1ap; armhf: raspi2b)" >&2; exit 2 ;;
esac
T0=$(date +%s)
log() { echo "image-test [$(( $(date +%s) - T0 ))s]: $*" >&2; }
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "image-test: ok   $*" >&2; }
bad() { FAIL=$((FAIL + 1)); echo "image-test: FAIL $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=../scripts/need.sh
. scripts/need.sh
for p in qemu-system-aarch64:qemu-system-arm mcopy:mtools debugfs:e2fsprogs sfdisk:fdisk xz:xz-utils python3:python3 dtc:device-tree-compiler; do
  need "${p%%:*}" "${p#*:}"
done

# --- the image and the host gateway -------------------------------------------------------
# The image is built unprivileged, as the README promises: run as root, this test hands the
# build to an ordinary user (PINCER_BUILD_USER, default pincer-build, made here with a
# subordinate id range) and falls back to a root build, loudly, only where this kernel refuses
# that user a user namespace.
# a copy of what build.sh reads (images/, scripts/need.sh, Cargo.toml) and FILES that every
# user can read; prints its directory
readable_copy() {
  local d
  d=$(mktemp -d "${TMPDIR:-/tmp}/pincer-image-src.XXXXXX")
  cp -a "$HERE" Cargo.toml "$@" "$d/"
  mkdir "$d/scripts"
  cp scripts/need.sh "$d/scripts/"
  chmod -R a+rX "$d"
  echo "$d"
}
build_image() {
  local cache=${PINCER_CACHE:-$HOME/.cache/pincer} out=$TARGET_DIR/image
  local version deb u src ts target file tsboard
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
  case "$BOARD" in
    arm64) target=aarch64-unknown-linux-gnu file=arm64 tsboard=arm64 ;;
    armhf) target=armv7-unknown-linux-gnueabihf file=armhf tsboard=armv7 ;;
    armel) target=arm-unknown-linux-musleabihf file=armel tsboard=armv6 ;;
  esac
  deb=$TARGET_DIR/deb/pincer_${version}_$file.deb
  # always (cargo rebuilds only what changed): binaries or a .deb left by an earlier checkout
  # must not go into the image (they once did: a card without `pincer-node provision`)
  log "building $deb (cross/build.sh, cross/deb.sh $target)"
  CARGO_TARGET_DIR=$TARGET_DIR ./cross/build.sh "$target" >&2
  if [ "$BOARD" = armel ]; then
    CARGO_TARGET_DIR=$TARGET_DIR ./cross/deb.sh "$target=armel" >&2
  else
    CARGO_TARGET_DIR=$TARGET_DIR ./cross/deb.sh "$target" >&2
  fi
  log "the board's Tailscale (scripts/install-tailnet.sh --board $tsboard, cached by version)"
  ts=$(./scripts/install-tailnet.sh --board "$tsboard" | sed -n 's/^TAILSCALE_BOARD=//p')
  if [ "$(id -u)" -ne 0 ]; then
    env CARGO_TARGET_DIR="$TARGET_DIR" PINCER_CACHE="$cache" "$HERE/build.sh" --board "$BOARD" --deb "$deb" --tailscale "$ts" --out "$out"
    return
  fi
  "$HERE/build.sh" --board "$BOARD" --prerequisites >&2
  u=${PINCER_BUILD_USER:-pincer-build}
  if ! id -u "$u" >/dev/null 2>&1; then
    log "adding the unprivileged build user $u"
    useradd --system --home-dir "/var/lib/$u" --create-home --shell /usr/sbin/nologin "$u"
  fi
  local f
  touch /etc/subuid /etc/subgid  # usermod refuses to add ranges to a file that does not exist
  for f in subuid subgid; do
    if ! grep -q "^$u:" "/etc/$f"; then
      # the next free 65536 ids above every range already given out
      local start
      start=$(awk -F: 'BEGIN {m = 100000} {e = $2 + $3; if (e > m) m = e} END {print m}' /etc/subuid /etc/subgid)
      usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$u"
    fi
  done
  if ! runuser -u "$u" -- unshare --map-auto --map-root-user true 2>/dev/null; then
    log "WARNING: this kernel gives $u no user namespace; building the image as root instead"
    env CARGO_TARGET_DIR="$TARGET_DIR" PINCER_CACHE="$cache" "$HERE/build.sh" --board "$BOARD" --deb "$deb" --tailscale "$ts" --out "$out"
    return
  fi
  # the download cache: where it is when $u can reach it, else in $u's home (root's home is
  # closed to others); a cache from an earlier root build is moved there once
  if ! runuser -u "$u" -- test -x "$cache"; then
    local own=/var/lib/$u/cache
    if [ ! -d "$own/image" ] && [ -d "$cache/image" ]; then
      log "moving the image cache $cache/image to $own/image (readable by $u)"
      mkdir -p "$own"
      mv "$cache/image" "$own/image"
    fi
    cache=$own
  fi
  mkdir -p "$cache/image" "$out"
  chown -R "$u:" "$cache/image" "$out"
  # the build reads images/, scripts/need.sh, Cargo.toml, the .deb and the Tailscale build: a
  # copy where the checkout or the cache is not readable by others (a home directory)
  src=$PWD
  if ! runuser -u "$u" -- test -r "$HERE/build.sh" -a -r "$PWD/Cargo.toml" -a -r "$deb" -a -r "$ts"; then
    src=$(readable_copy "$deb" "$ts")
    deb=$src/$(basename "$deb")
    ts=$src/$(basename "$ts")
  fi
  log "building the image as the unprivileged user $u (images/build.sh, cache $cache)"
  local rc=0
  (cd / && runuser -u "$u" -- env PINCER_CACHE="$cache" HOME="/var/lib/$u" TMPDIR=/tmp \
    "$src/images/build.sh" --board "$BOARD" --deb "$deb" --tailscale "$ts" --out "$out") || rc=$?
  [ "$src" = "$PWD" ] || rm -rf "$src"
  return "$rc"
}
if [ -z "$IMG" ] && [ "$(id -u)" -eq 0 ] && [ "$BOARD" = arm64 ]; then
  # a user without subordinate ids is told what to do, before anything is downloaded
  "$HERE/build.sh" --prerequisites >&2
  SRC=$(readable_copy)
  MSG=$(cd / && runuser -u nobody -- "$SRC/images/build.sh" --out /nonexistent 2>&1 >/dev/null) && MSG=
  rm -rf "$SRC"
  check "build.sh as a user without subordinate ids: refused, and told the fix" \
    grep -q "no /etc/subuid range for nobody.*usermod --add-subuids" <<<"$MSG"
fi
if [ -z "$IMG" ]; then
  XZ=$(build_image | tail -1)
  IMG=${XZ%.xz}
fi
[ -f "$IMG" ] || { echo "test.sh: no image at $IMG" >&2; exit 1; }
GW=$TARGET_DIR/release/pincer-gateway
if [ ! -x "$GW" ]; then
  log "building pincer-gateway for this host"
  cargo build --release -p pincer-gateway >&2
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/pincer-image-test.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$FAIL" -eq 0 ] && [ -z "${PINCER_KEEP:-}" ]; then rm -rf "$W"; else echo "image-test: work dir kept: $W" >&2; fi
}
trap cleanup EXIT

# --- the card: a copy of the image, 2 GiB ------------------------------------------------
log "copying $IMG"
cp --sparse=always "$IMG" "$W/sd.img"
truncate -s 2G "$W/sd.img"
read -r BOOT_START BOOT_SECTORS ROOT_START ROOT_SECTORS < <(sfdisk -d "$W/sd.img" | awk -F'[=,]' '
  /^[^ ]*1 :/ {b=$2; bs=$4} /^[^ ]*2 :/ {r=$2; s=$4}
  END {gsub(/ /,"",b); gsub(/ /,"",bs); gsub(/ /,"",r); gsub(/ /,"",s); print b, bs, r, s}')
FAT="$W/sd.img@@$((BOOT_START * 512))"
KERNEL=$(mdir -b -i "$FAT" ::/ | sed -n 's|^::/\(vmlinuz-.*\)|\1|p' | sort -V | tail -1)
INITRD=$(mdir -b -i "$FAT" ::/ | sed -n 's|^::/\(initrd.img-.*\)|\1|p' | sort -V | tail -1)
[ -n "$KERNEL" ] && [ -n "$INITRD" ] || { echo "test.sh: no kernel/initrd on the FAT partition" >&2; mdir -i "$FAT" ::/ >&2; exit 1; }
mcopy -n -i "$FAT" "::/$KERNEL" "$W/vmlinuz"
mcopy -n -i "$FAT" "::/$INITRD" "$W/initrd"
log "kernel $KERNEL, initrd $INITRD ($(stat -c %s "$W/initrd") bytes) from the image's FAT partition"
if [ "$BOARD" != arm64 ]; then
  # the board's device tree, less the power manager's second register range (the AXI bridge
  # "asb", which qemu's raspi machines do not model): with it, bcm2835_power_probe takes an
  # external abort and the kernel panics before init
  mcopy -n -i "$FAT" "::/$DTB_NAME" "$W/board.dtb"
  dtc -q -I dtb -O dts "$W/board.dtb" >"$W/board.dts"
  sed -i 's/reg = <0x7e100000 0x114 0x7e00a000 0x24>;/reg = <0x7e100000 0x114>;/; s/reg-names = "pm\\0asb";/reg-names = "pm";/' "$W/board.dts"
  grep -q 'reg-names = "pm";' "$W/board.dts" || { echo "test.sh: $DTB_NAME has no power manager node to adjust" >&2; exit 1; }
  dtc -q -I dts -O dtb "$W/board.dts" >"$W/qemu.dtb"
  log "device tree $DTB_NAME for qemu -M $MACHINE (the power manager's ASB range removed)"
fi

# test-only changes to the copy's root file system (debugfs on the extracted partition)
NMEA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/t"
printf 'vivid\nsnd-aloop\n' >"$W/t/modules"
printf 'options vivid n_devs=1 node_types=0x1\noptions snd-aloop index=0\n' >"$W/t/modprobe"
# qemu's usb-net has the Linux gadget's USB ids (0525:a4a2), which cdc_subset also claims: it
# takes the data interface first and cdc_ether, the right driver, fails with EBUSY
[ "$BOARD" = arm64 ] || echo 'blacklist cdc_subset' >>"$W/t/modprobe"
printf 'DEVICES="tcp://10.0.2.2:%s"\nGPSD_OPTIONS="-n"\nUSBAUTO="false"\nSTART_DAEMON="true"\n' "$NMEA_PORT" >"$W/t/gpsd"
printf '[Journal]\nForwardToConsole=yes\nTTYPath=/dev/ttyAMA0\nMaxLevelConsole=info\n' >"$W/t/journald"
# the unreachable-gateway report runs 45 s after boot and then every 15 s here instead of 3 min
# and 5 min (a report written before a slow node connected is removed by the next run; the
# empty OnBootSec= resets both of the image's times)
printf '[Timer]\nOnBootSec=\nOnBootSec=45s\nOnUnitActiveSec=15s\n' >"$W/t/report-timer"
# memory in use every 15 s with the node running, and the largest processes, on the console
cat >"$W/t/mem" <<'MEM'
#!/bin/sh
# test-only (images/test.sh): what the board's memory holds
while sleep 15; do
  set -- $(awk '/^(MemTotal|MemFree|Buffers|Cached|SReclaimable):/ {printf "%s ", $2}' /proc/meminfo)
  top=$(for f in /proc/[0-9]*/status; do awk '/^Name:/ {n=$2} /^VmRSS:/ {print $2 "k:" n}' "$f" 2>/dev/null; done | sort -n | tail -8 | tr '\n' ' ')
  node=$(for f in /proc/[0-9]*; do [ "$(cat "$f/comm" 2>/dev/null)" = pincer-node ] && awk '/^VmRSS:/ {print $2 "k"}' "$f/status"; done)
  echo "pincer-test-mem: total=$1 free=$2 buffers=$3 cached=$4 sreclaimable=$5 node=$node top=$top"
done
MEM
chmod 0755 "$W/t/mem"
printf '[Unit]\nDescription=image test: memory in use\nAfter=pincer-node.service\n[Service]\nExecStart=/usr/local/sbin/pincer-test-mem\n[Install]\nWantedBy=multi-user.target\n' >"$W/t/mem.service"
# The Pi has no real-time clock (qemu's raspi machines have none either; -M virt has one): the
# 32-bit boards boot at the image's build time and take the time from NTP, as a real Zero
# does, from a small SNTP server on the host (10.0.2.2:123 in the guest, below). arm64's
# clock is right from the start, and timesyncd is masked there.
if [ "$BOARD" = arm64 ]; then
  TIMESYNC="symlink /etc/systemd/system/systemd-timesyncd.service /dev/null"
else
  printf '[Time]\nNTP=10.0.2.2\nFallbackNTP=\n' >"$W/t/timesyncd"
  TIMESYNC="write $W/t/timesyncd /etc/systemd/timesyncd.conf.d/zz-pincer-test.conf"
  echo "mkdir /etc/systemd/timesyncd.conf.d" >"$W/t/debugfs-pre"
fi
cat >"$W/t/debugfs" <<EOF
write $W/t/modules /etc/modules-load.d/pincer-test.conf
write $W/t/modprobe /etc/modprobe.d/pincer-test.conf
rm /etc/default/gpsd
write $W/t/gpsd /etc/default/gpsd
write $W/t/journald /etc/systemd/journald.conf.d/zz-pincer-test.conf
symlink /etc/systemd/system/multi-user.target.wants/gpsd.service /lib/systemd/system/gpsd.service
$TIMESYNC
mkdir /etc/systemd/system/pincer-report.timer.d
write $W/t/report-timer /etc/systemd/system/pincer-report.timer.d/zz-pincer-test.conf
write $W/t/mem /usr/local/sbin/pincer-test-mem
write $W/t/mem.service /etc/systemd/system/pincer-test-mem.service
symlink /etc/systemd/system/multi-user.target.wants/pincer-test-mem.service /etc/systemd/system/pincer-test-mem.service
EOF
prepare_root() { # prepare_root CARD [check-owners]: the test-only changes in CARD's root
  dd if="$1" of="$W/root.ext4" bs=4M iflag=skip_bytes,count_bytes skip=$((ROOT_START * 512)) count=$((ROOT_SECTORS * 512)) status=none
  [ -z "${2:-}" ] || check "every file of the image is owned by one of its accounts (no builder's host ids)" \
    "$HERE/check-owners" "$W/root.ext4"
  if [ -f "$W/t/debugfs-pre" ]; then
    debugfs -w -f "$W/t/debugfs-pre" "$W/root.ext4" >>"$W/debugfs.log" 2>&1 || true  # (may exist)
  fi
  debugfs -w -f "$W/t/debugfs" "$W/root.ext4" >"$W/debugfs.log" 2>&1 || { cat "$W/debugfs.log" >&2; exit 1; }
  dd if="$W/root.ext4" of="$1" bs=4M oflag=seek_bytes seek=$((ROOT_START * 512)) conv=notrunc,sparse status=none
  rm -f "$W/root.ext4"
}
prepare_root "$W/sd.img" check-owners

# --- host side: gateway, setup code, NMEA feed ----------------------------------------------
"$GW" run --bind loopback --port 0 --state-dir "$W/gw" >"$W/gw.out" 2>"$W/gw.log" &
PIDS+=($!)
T=$(date +%s)  # until it says where it listens (or exits, or 2 min pass)
until grep -q "listening on" "$W/gw.out" 2>/dev/null; do
  if ! kill -0 "${PIDS[-1]}" 2>/dev/null || [ $(( $(date +%s) - T )) -ge 120 ]; then break; fi
  sleep 0.2
done
PORT=$(sed -n 's/.*listening on ws:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$W/gw.out" | head -1)
[ -n "$PORT" ] || { cat "$W/gw.log" >&2; echo "test.sh: gateway did not start" >&2; exit 1; }
gwc() { "$GW" "$@" --url "ws://127.0.0.1:$PORT" --state-dir "$W/gw"; }
CODE=$(gwc devices setup-code --role node --ttl 2h --gateway-url "ws://10.0.2.2:$PORT" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["shortCode"])')
log "pincer-gateway on 127.0.0.1:$PORT (10.0.2.2:$PORT in the guest), setup code $CODE"

python3 - "$NMEA_PORT" "$PWD/tests/nmea/berlin.nmea" >"$W/nmea.log" 2>&1 <<'PY' &
import socket, sys, threading, time
port, path = int(sys.argv[1]), sys.argv[2]
lines = [l.strip() + "\r\n" for l in open(path) if l.startswith("$")]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(4)
def feed(c):
    try:
        while True:
            for l in lines:
                if l.startswith("$GPGGA") : time.sleep(0.5)
                c.sendall(l.encode())
    except OSError:
        c.close()
while True:
    c, _ = srv.accept(); print("nmea client", flush=True)
    threading.Thread(target=feed, args=(c,), daemon=True).start()
PY
PIDS+=($!)
if [ "$BOARD" != arm64 ]; then
  # SNTP (RFC 4330) on the host's 127.0.0.1:123 for the guest's timesyncd: the host's time
  python3 - >"$W/ntp.log" 2>&1 <<'PY' &
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 123))
EPOCH = 2208988800  # 1900 -> 1970
def ntp(t):
    return struct.pack("!II", int(t) + EPOCH, int((t % 1) * 2**32))
while True:
    data, addr = s.recvfrom(512)
    if len(data) < 48:
        continue
    now = time.time()
    # LI 0, the client's version, mode 4 (server); stratum 1, "LOCL"; the client's transmit
    # time as the originate timestamp
    reply = (bytes([(data[0] & 0x38) | 4, 1, 6, 0xEC]) + b"\0" * 8 + b"LOCL"
             + ntp(now) + data[40:48] + ntp(now) + ntp(time.time()))
    s.sendto(reply, addr)
    print("ntp answer to", addr, flush=True)
PY
  PIDS+=($!)
fi

SSH_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPincerImageTestKeyNotARealKeyAtAll0000000 image-test"
cat >"$W/pincer.toml" <<EOF
# pincer.toml written by images/test.sh
gateway = "ws://10.0.2.2:$PORT"
setup_code = "$CODE"
name = "pincer-image-test"
caps = ["system", "location", "camera", "audio"]
hostname = "pincer-test"
timezone = "Europe/Berlin"
wifi_country = "DE"
wifi_ssid = "pincer test net"
wifi_password = "not-a-real-password"
ssh_key = "$SSH_KEY"
EOF
mcopy -o -i "$FAT" "$W/pincer.toml" ::/pincer.toml

# --- boot -------------------------------------------------------------------------------------
QEMU_PID='' T_ON=''
boot() { # boot LOGFILE [QEMU ARGS...]: power on (T_ON is the moment); the card is sd.img unless
  local log=$1; shift  # other disk arguments are given
  T_ON=$(date +%s)
  if [ "$BOARD" = arm64 ]; then
    [ $# -gt 0 ] || set -- -drive "file=$W/sd.img,if=virtio,format=raw"
    qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
      -kernel "$W/vmlinuz" -initrd "$W/initrd" -append "root=/dev/vda2 console=ttyAMA0" \
      "$@" \
      -netdev user,id=n -device virtio-net-pci,netdev=n,romfile= \
      </dev/null >"$log" 2>&1 &
  else
    # the Pi's own memory size (raspi0: 512 MB) and SD card; the network on its USB port
    [ $# -gt 0 ] || set -- -drive "file=$W/sd.img,if=sd,format=raw"
    qemu-system-arm -M "$MACHINE" -nographic -no-reboot \
      -kernel "$W/vmlinuz" -initrd "$W/initrd" -dtb "$W/qemu.dtb" \
      -append "root=/dev/mmcblk0p2 rootwait console=ttyAMA0,115200" \
      "$@" \
      -netdev user,id=n -device usb-net,netdev=n \
      </dev/null >"$log" 2>&1 &
  fi
  QEMU_PID=$!
  PIDS+=("$QEMU_PID")
}
on_for() { echo $(( $(date +%s) - T_ON )); }  # seconds since power-on
up() { [ "$(on_for)" -le "$DEADLINE" ] && kill -0 "$QEMU_PID" 2>/dev/null; }  # qemu running, in time
power_cut() { kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; }
node_json() { gwc nodes list --json 2>/dev/null | python3 -c '
import json,sys
for n in json.load(sys.stdin).get("nodes", []):
    if n.get("displayName") == sys.argv[1] and n.get("connected"):
        print(n["nodeId"]); break' "${1:-pincer-image-test}" 2>/dev/null || true; }  # [NAME]
wait_node() { local n=; while [ -z "$n" ] && up; do sleep 2; n=$(node_json "$@"); done; echo "$n"; }
# The waits below are for conditions, never for a time: under TCG a boot takes 30 s or 3 min.
wait_console() { # PATTERN FILE: until the console shows it (false if it never did)
  while ! grep -q "$1" "$2" 2>/dev/null && up; do sleep 2; done
  grep -q "$1" "$2" 2>/dev/null
}
wait_count() { # PATTERN FILE N: until the console shows it N times
  local n
  while n=$(grep -c "$1" "$2" 2>/dev/null || true); [ "${n:-0}" -lt "$3" ] && up; do sleep 2; done
  [ "${n:-0}" -ge "$3" ]
}
# Before a power cut whose card is checked for "no pincer-error.txt": pincer-report has run
# since the node connected (a run before that writes a report; the next one removes it).
settled() { wait_console "pincer-report: node connected" "$1"; }  # CONSOLE

# --- a card that joins a tailnet at first boot ----------------------------------------------
# The tailnet and its gateway are the remote tests' own (tests/support/tailnet.rs), run by the
# gateway's tailnet test binary as a helper: headscale listens on a bridge address of this
# host, which the guest reaches through qemu's user-mode network (it connects from here).
harness_said() { # what the tailnet helper said (its panic, its progress), or its log's end
  grep -E 'panicked|BOARD|board tailnet' "$W/tailnet.log" >&2 || tail -30 "$W/tailnet.log" >&2
}
tailnet_boot() {
  if [ -z "${PINCER_TAILSCALED:-}" ]; then
    log "the tailnet binaries (scripts/install-tailnet.sh)"
    eval "$(./scripts/install-tailnet.sh | grep -E '^(TAILSCALED|TAILSCALE|HEADSCALE)=')"
    export PINCER_TAILSCALED="$TAILSCALED" PINCER_TAILSCALE="$TAILSCALE" PINCER_HEADSCALE="$HEADSCALE"
  fi
  mkdir -p "$W/tailnet"
  log "a tailnet for the board (cargo test --test tailnet board_tailnet_for_the_image_test; log $W/tailnet.log)"
  PINCER_BOARD_TAILNET=$W/tailnet PINCER_BOARD_DEADLINE=$DEADLINE PINCER_REQUIRE_TAILNET=1 \
    PINCER_BOARD_HOSTNAME=pincer-tailnet PINCER_BOARD_NODE=pincer-tailnet-board \
    cargo test -q --workspace --all-features --test tailnet -- --ignored --exact \
      board_tailnet_for_the_image_test --nocapture >"$W/tailnet.log" 2>&1 &
  local harness=$!
  PIDS+=("$harness")
  # (a cold cargo build may come first: waited for by its end, not by a time)
  while [ ! -s "$W/tailnet/board.env" ] && kill -0 "$harness" 2>/dev/null; do sleep 1; done
  if [ ! -s "$W/tailnet/board.env" ]; then
    bad "tailnet: the tailnet and its gateway started"; tail -40 "$W/tailnet.log" >&2; return
  fi
  local l k v LOGIN_SERVER='' AUTHKEY='' GATEWAY='' SETUP_CODE=''
  while IFS= read -r l; do
    k=${l%%=*} v=${l#*=}
    case $k in LOGIN_SERVER) LOGIN_SERVER=$v ;; AUTHKEY) AUTHKEY=$v ;; GATEWAY) GATEWAY=$v ;; SETUP_CODE) SETUP_CODE=$v ;; esac
  done <"$W/tailnet/board.env"
  log "tailnet: control server $LOGIN_SERVER, gateway $GATEWAY (its tailnet address)"
  cp --sparse=always "$IMG" "$W/tail.img"
  truncate -s 2G "$W/tail.img"
  prepare_root "$W/tail.img"
  local fat="$W/tail.img@@$((BOOT_START * 512))" root="$W/tail.img?offset=$((ROOT_START * 512))"
  {
    echo "# pincer.toml written by images/test.sh: the board joins a self-hosted tailnet"
    echo "gateway = \"$GATEWAY\""
    echo "setup_code = \"$SETUP_CODE\""
    echo 'name = "pincer-tailnet-board"'
    echo 'caps = ["system"]'
    echo 'hostname = "pincer-tailnet"'
    echo "tailscale_authkey = \"$AUTHKEY\""
    echo "tailscale_login_server = \"$LOGIN_SERVER\""
  } >"$W/tail.toml"
  mcopy -o -i "$fat" "$W/tail.toml" ::/pincer.toml
  log "booting a card that joins the tailnet (console: $W/console-tailnet.log)"
  local disk=(-drive "file=$W/tail.img,if=virtio,format=raw")
  boot "$W/console-tailnet.log" "${disk[@]}"
  while [ ! -s "$W/tailnet/joined" ] && kill -0 "$harness" 2>/dev/null && up; do sleep 2; done
  if [ -s "$W/tailnet/joined" ]; then
    ok "tailnet: the board joined the tailnet at first boot, its node paired and answered over the gateway's tailnet address ($(on_for)s): $(cat "$W/tailnet/joined")"
  else
    bad "tailnet: the board joined the tailnet and its node reached the gateway over it"
    kill "$harness" 2>/dev/null || true
    harness_said
    tail -60 "$W/console-tailnet.log" >&2
  fi
  wait_console "pincer-tailscale: joined the tailnet" "$W/console-tailnet.log" || log "pincer-tailscale said nothing"
  settled "$W/console-tailnet.log" || log "pincer-report did not run"
  power_cut
  mcopy -n -i "$fat" ::/pincer.toml "$W/tail.toml.after" 2>/dev/null || true
  mcopy -n -i "$fat" ::/pincer-applied.txt "$W/applied-tailnet.txt" 2>/dev/null || true
  sed 's/^/image-test:   | /' "$W/applied-tailnet.txt" >&2 || true
  local state
  state=$(debugfs -R 'ls /var/lib/pincer-firstboot' "$root" 2>/dev/null)
  check "tailnet: the auth key is gone from the card (pincer.toml scrubbed; no key, no control server left in /var/lib/pincer-firstboot)" \
    bash -c "! grep -qF '$AUTHKEY' '$W/tail.toml.after' && grep -q '^# tailscale_authkey = (applied' '$W/tail.toml.after' \
      && grep -q first-boot-done <<<'$state' && ! grep -q 'tailscale-authkey\|tailscale-login-server' <<<'$state'"
  check "tailnet: pincer-applied.txt names the board's tailnet address" \
    grep -q 'tailscale: joined the tailnet as pincer-tailnet (100\.' "$W/applied-tailnet.txt"
  check "tailnet: tailscaled's state is on the card" \
    bash -c "debugfs -R 'ls /var/lib/tailscale' '$root' 2>/dev/null | grep -q tailscaled.state"
  kill -0 "$harness" 2>/dev/null || return 0
  log "second boot of the tailnet card (console: $W/console-tailnet2.log)"
  : >"$W/tailnet/rebooted"
  boot "$W/console-tailnet2.log" "${disk[@]}"
  while [ ! -e "$W/tailnet/deleted" ] && kill -0 "$harness" 2>/dev/null && up; do sleep 2; done
  if [ -e "$W/tailnet/deleted" ]; then
    ok "tailnet: second boot: tailscaled rejoined without the key, the node is back over the tailnet ($(on_for)s)"
  else
    bad "tailnet: second boot: the node back over the tailnet"
    kill "$harness" 2>/dev/null || true
    harness_said
    tail -40 "$W/console-tailnet2.log" >&2
  fi
  power_cut
  # removed from the tailnet (deleted on the control server), then given the key again in
  # pincer.toml: the board logs in anew (its old login is dead), and the node comes back
  kill -0 "$harness" 2>/dev/null || return 0
  {
    echo "# pincer.toml written by images/test.sh: the board was removed from its tailnet"
    echo "gateway = \"$GATEWAY\""
    echo 'name = "pincer-tailnet-board"'
    echo 'caps = ["system"]'
    echo 'hostname = "pincer-tailnet"'
    echo "tailscale_authkey = \"$AUTHKEY\""
    echo "tailscale_login_server = \"$LOGIN_SERVER\""
  } >"$W/tail3.toml"
  mcopy -o -i "$fat" "$W/tail3.toml" ::/pincer.toml
  log "third boot of the tailnet card: removed from the tailnet, the key given again (console: $W/console-tailnet3.log)"
  : >"$W/tailnet/rekeyed"
  boot "$W/console-tailnet3.log" "${disk[@]}"
  while kill -0 "$harness" 2>/dev/null && up; do sleep 2; done
  local rc=0
  if kill -0 "$harness" 2>/dev/null; then rc=124; kill "$harness" 2>/dev/null || true; fi
  wait "$harness" || rc=$?
  if [ "$rc" -eq 0 ]; then
    ok "tailnet: removed from the tailnet and given the key again: it joined anew and the node is back over the tailnet ($(on_for)s)"
  else
    bad "tailnet: the key given again after the board was removed from the tailnet (helper exit $rc)"
    harness_said
    grep -E 'pincer-tailscale|tailscaled' "$W/console-tailnet3.log" | tail -30 >&2
  fi
  wait_console "pincer-tailscale: joined the tailnet" "$W/console-tailnet3.log" || log "pincer-tailscale said nothing"
  power_cut
  check "tailnet: the key given again is gone from the card too" \
    bash -c "! debugfs -R 'ls /var/lib/pincer-firstboot' '$root' 2>/dev/null | grep -q 'tailscale-authkey'"
}
[ "$BOARD" != arm64 ] || tailnet_boot
if [ -n "$TAILNET_ONLY" ]; then
  echo "image-test: $PASS passed, $FAIL failed ($(( $(date +%s) - T0 ))s in all; --tailnet-only)" >&2
  [ "$FAIL" -eq 0 ]
  exit
fi

log "booting (deadline ${DEADLINE}s for the node to be listed; console: $W/console1.log)"
boot "$W/console1.log"
NODE=$(wait_node)
if [ -z "$NODE" ]; then
  kill -0 "$QEMU_PID" 2>/dev/null || log "qemu exited"
  bad "node listed within ${DEADLINE}s"
  tail -60 "$W/console1.log" >&2; tail -20 "$W/gw.log" >&2
  exit 1
fi
T_PAIRED=$(on_for)
ok "node $NODE paired by itself with the setup code and listed as connected, $T_PAIRED s after power-on"
check "the setup code admitted it as a remote device (gateway log: locality=Remote, bootstrap=true)" \
  grep -q 'paired silently.*locality=Remote.*bootstrap=true' "$W/gw.log"

gwc nodes approve "$NODE" >"$W/approve.out" 2>&1 || gwc nodes approve pincer-image-test >>"$W/approve.out" 2>&1 || true
invoke() { # invoke COMMAND PARAMS OUT: retried while the node settles (approval, gpsd start)
  while up; do
    if gwc nodes invoke "$NODE" "$1" --params "$2" --invoke-timeout-ms 60000 --json >"$3" 2>"$3.err"; then return 0; fi
    sleep 3
  done
  cat "$3.err" >&2
  return 1
}
T=$(date +%s)
if invoke location.get '{"timeoutMs":20000}' "$W/loc.json"; then
  check "location.get: Berlin from gpsd in the guest ($(( $(date +%s) - T )) s)" python3 -c '
import json,sys; v=json.load(open(sys.argv[1])); v=v.get("payload", v)
assert abs(v["lat"]-52.52)<0.01 and abs(v["lon"]-13.405)<0.01, v' "$W/loc.json"
else bad "location.get"; fi
T=$(date +%s)
if invoke camera.snap '{"maxWidth":640}' "$W/snap.json"; then
  check "camera.snap: a JPEG from vivid ($(( $(date +%s) - T )) s)" python3 -c '
import json,sys,base64; v=json.load(open(sys.argv[1])); v=v.get("payload", v)
b=base64.b64decode(v["base64"]); assert v["format"]=="jpg" and b[:2]==b"\xff\xd8" and v["width"]>0, (v.get("format"), v.get("width"))
print("image-test:      %dx%d, %d bytes" % (v["width"], v["height"], len(b)), file=sys.stderr)' "$W/snap.json"
else bad "camera.snap"; fi
T=$(date +%s)
if invoke audio.record '{"durationMs":500}' "$W/rec.json"; then
  check "audio.record: a WAV from snd-aloop ($(( $(date +%s) - T )) s)" python3 -c '
import json,sys,base64; v=json.load(open(sys.argv[1])); v=v.get("payload", v)
b=base64.b64decode(v["base64"]); assert v["format"]=="wav" and b[:4]==b"RIFF", v.get("format")' "$W/rec.json"
else bad "audio.record"; fi
T=$(date +%s)
if invoke system.which '{"bins":["sh","gpsd","no-such-program"]}' "$W/which.json"; then
  check "system.which: sh and gpsd found, a missing program not ($(( $(date +%s) - T )) s)" python3 -c '
import json,sys; v=json.load(open(sys.argv[1])); v=v.get("payload", v); b=v["bins"]
assert "sh" in b and "gpsd" in b and "no-such-program" not in b, v' "$W/which.json"
else bad "system.which"; fi
# the used memory (what free(1) calls used: not free, buffers or page cache) once the node has
# served all of the above: the next report after them
N=$(grep -c "pincer-test-mem:" "$W/console1.log" || true)
if wait_count "pincer-test-mem:" "$W/console1.log" $(( ${N:-0} + 1 )); then
  MEM=$(grep "pincer-test-mem:" "$W/console1.log" | tail -1 | sed 's/.*pincer-test-mem: //')
  USED_KB=$(python3 -c '
import sys; f=dict(kv.split("=",1) for kv in sys.argv[1].split() if "=" in kv and kv.split("=")[0] in ("total","free","buffers","cached","sreclaimable"))
print(int(f["total"])-int(f["free"])-int(f["buffers"])-int(f["cached"])-int(f["sreclaimable"]))' "$MEM")
  log "memory with the node running: used ${USED_KB} kB; $MEM"
  if [ "$BOARD" = armel ]; then
    check "used memory with the node running ≤ 64 MB on the Zero (${USED_KB} kB)" test "$USED_KB" -le $((64 * 1024))
  fi
else bad "a memory report on the console"; fi

# cut the power once nothing is being written: sshd made its host keys and synced them (its
# ExecStartPre says so on the kernel log; a fixed 5 s was not enough on a loaded emulator), and
# pincer-report has seen the node connected
wait_console "ssh host keys on disk" "$W/console1.log" || log "sshd did not make its host keys"
settled "$W/console1.log" || log "pincer-report did not run"
sleep 2
T_UP=$(on_for)
power_cut
log "power cut after ${T_UP}s"

# --- the FAT partition, read back -----------------------------------------------------------
mcopy -n -i "$FAT" ::/pincer.toml "$W/pincer.toml.after" 2>/dev/null || true
mcopy -n -i "$FAT" ::/pincer-applied.txt "$W/applied.txt" 2>/dev/null || true
check "pincer-error.txt absent" bash -c "! mdir -b -i '$FAT' ::/ | grep -q pincer-error.txt"
check "pincer-applied.txt present" test -s "$W/applied.txt"
sed 's/^/image-test:   | /' "$W/applied.txt" >&2 || true
check "secrets moved off the FAT partition (setup_code, wifi_password)" bash -c "
  ! grep -q '$CODE' '$W/pincer.toml.after' && ! grep -q 'not-a-real-password' '$W/pincer.toml.after' \
  && grep -q '^# setup_code = (applied' '$W/pincer.toml.after'"
check "root file system grown to the 2 GiB card" grep -q "root file system grown" "$W/applied.txt"
# the card's root file system, read back with debugfs (the image shipped no machine-id, no
# SSH host keys, the gateway disabled and the journal in RAM)
on_card() { debugfs -R "$1" "$W/sd.img?offset=$((ROOT_START * 512))" 2>/dev/null; }
machine_id_made() { grep -qE '^[0-9a-f]{32}$' <<<"$(on_card 'cat /etc/machine-id')"; }
host_keys_made() { grep -q 'ssh_host_ed25519_key.pub' <<<"$(on_card 'ls /etc/ssh')"; }
gateway_on() { grep -q 'pincer-gateway' <<<"$(on_card 'ls /etc/systemd/system/multi-user.target.wants')"; }
gateway_off() { grep -q 'pincer-gateway.service' <<<"$(on_card 'ls /lib/systemd/system')" && ! gateway_on; }
journal_in_ram() { ! grep -qE '[0-9a-f]{32}' <<<"$(on_card 'ls /var/log/journal')"; }
check "a machine-id of its own, made on first boot" machine_id_made
check "SSH host keys made on the board (sshd on: pincer.toml has a key)" host_keys_made
check "pincer-gateway installed but not enabled (pincer.toml did not ask for it)" gateway_off
check "the journal stayed in RAM (nothing under /var/log/journal on the card)" journal_in_ram
check "hostname, timezone, Wi-Fi and SSH applied" bash -c "grep -q 'hostname: pincer-test' '$W/applied.txt' && grep -q 'timezone: Europe/Berlin' '$W/applied.txt' && grep -q \"wifi: 'pincer test net' in DE\" '$W/applied.txt' && grep -q 'ssh: key for root installed' '$W/applied.txt'"

# --- second boot: nothing re-applied, same identity, no new pairing ---------------------------
log "second boot (console: $W/console2.log)"
PAIRED_BEFORE=$(gwc devices list --json 2>/dev/null | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v.get("paired", [])), len(v.get("pending", [])))')
boot "$W/console2.log"
NODE2=$(wait_node)
T_RECONNECT=$(on_for)
check "second boot: the node reconnected as $NODE (${T_RECONNECT}s after power-on)" test "$NODE2" = "$NODE"
PAIRED_AFTER=$(gwc devices list --json 2>/dev/null | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v.get("paired", [])), len(v.get("pending", [])))')
check "second boot: no new pairing (paired/pending $PAIRED_BEFORE -> $PAIRED_AFTER)" test "$PAIRED_BEFORE" = "$PAIRED_AFTER"
check "second boot: pincer.toml not re-applied" wait_console "pincer.toml unchanged since it was applied" "$W/console2.log"
power_cut
if [ "$BOARD" != arm64 ]; then
  echo "image-test: $PASS passed, $FAIL failed ($(( $(date +%s) - T0 ))s in all; --board $BOARD, qemu -M $MACHINE)" >&2
  [ "$FAIL" -eq 0 ]
  exit
fi

# --- a malformed pincer.toml: the board boots on with what it had, the error is on the card ----
printf 'gateway = "ws://10.0.2.2:%s"\ntimezone = "UTC"\nwifi_ssid = "unterminated\n' "$PORT" >"$W/bad.toml"
mcopy -o -i "$FAT" "$W/bad.toml" ::/pincer.toml
log "third boot, malformed pincer.toml (console: $W/console3.log)"
boot "$W/console3.log"
NODE3=$(wait_node)
check "malformed pincer.toml: the node still comes up with its previous settings ($(on_for)s)" test "$NODE3" = "$NODE"
wait_console "pincer-firstboot: ERROR" "$W/console3.log" || log "pincer-firstboot reported no error"
power_cut
mcopy -n -i "$FAT" ::/pincer-error.txt "$W/error.txt" 2>/dev/null || true
check "malformed pincer.toml: pincer-error.txt on the FAT partition names the line" grep -q "line 3: 'wifi_ssid': invalid basic string" "$W/error.txt"
sed 's/^/image-test:   | /' "$W/error.txt" >&2 || true

# --- fixed: applied on the next boot, the error file goes away ------------------------------
printf 'gateway = "ws://10.0.2.2:%s"\nname = "pincer-image-test"\ntimezone = "UTC"\ngateway_service = true\n' "$PORT" >"$W/fixed.toml"
mcopy -o -i "$FAT" "$W/fixed.toml" ::/pincer.toml
log "fourth boot, pincer.toml fixed (console: $W/console4.log)"
boot "$W/console4.log"
NODE4=$(wait_node)
check "fixed pincer.toml: the node reconnects with its saved identity and the kept setup code/token ($(on_for)s)" test "$NODE4" = "$NODE"
wait_console "pincer-firstboot: pincer.toml applied" "$W/console4.log" || log "pincer-firstboot did not apply it"
settled "$W/console4.log" || log "pincer-report did not run"
power_cut
mcopy -n -i "$FAT" ::/pincer-applied.txt "$W/applied4.txt" 2>/dev/null || true
check "fixed pincer.toml: applied (timezone UTC), pincer-error.txt removed" bash -c "
  grep -q 'timezone: UTC' '$W/applied4.txt' && ! mdir -b -i '$FAT' ::/ | grep -q pincer-error.txt"
check "gateway_service = true: pincer-gateway enabled on the board" gateway_on

# --- an unreachable gateway: the board boots, the node keeps retrying, the report is on the card --
printf 'gateway = "ws://10.0.2.2:1"\nname = "pincer-image-test"\n' >"$W/unreachable.toml"
mcopy -o -i "$FAT" "$W/unreachable.toml" ::/pincer.toml
log "fifth boot, unreachable gateway (console: $W/console5.log)"
boot "$W/console5.log"
wait_console "pincer-report: node not connected" "$W/console5.log" || log "pincer-report did not report"
check "unreachable gateway: the node keeps retrying" wait_count 'reconnecting' "$W/console5.log" 2
power_cut
mcopy -n -i "$FAT" ::/pincer-error.txt "$W/error5.txt" 2>/dev/null || true
check "unreachable gateway: pincer-error.txt says the node cannot reach ws://10.0.2.2:1 ($(on_for)s)" \
  bash -c "grep -q 'not connected to its gateway' '$W/error5.txt' && grep -q 'ws://10.0.2.2:1' '$W/error5.txt'"
sed 's/^/image-test:   | /' "$W/error5.txt" >&2 || true

# --- the gateway fixed: the node is back with its device token, the report goes away ----------
printf 'gateway = "ws://10.0.2.2:%s"\nname = "pincer-image-test"\ntimezone = "UTC"\n' "$PORT" >"$W/fixed6.toml"
mcopy -o -i "$FAT" "$W/fixed6.toml" ::/pincer.toml
log "sixth boot, gateway fixed (console: $W/console6.log)"
boot "$W/console6.log"
NODE6=$(wait_node)
check "gateway fixed: the node reconnects with its device token, same identity ($(on_for)s)" test "$NODE6" = "$NODE"
# (pincer-firstboot already removed the report when it applied the fixed file; the report
# service must not bring it back once it has run)
settled "$W/console6.log" || log "pincer-report did not run"
power_cut
check "gateway fixed: the report is removed from the FAT partition" bash -c "! mdir -b -i '$FAT' ::/ | grep -q pincer-error.txt"

# --- a slow card: a fresh card whose boot partition appears long after the root -------------
# The FAT file system stays where it is in the card's file, but the partition table has no
# entry for it: qemu shows it as a second disk (a raw window onto the same file) hot-plugged
# through its monitor once the board has booted without it - the root came, the boot partition
# did not (on the fresh machine that lost its pincer.toml, the label appeared after ~37 s).
log "seventh boot: a fresh card whose boot partition comes late (console: $W/console7.log)"
cp --sparse=always "$IMG" "$W/slow.img"
truncate -s 2G "$W/slow.img"
prepare_root "$W/slow.img"
SLOW_FAT="$W/slow.img@@$((BOOT_START * 512))"
CODE7=$(gwc devices setup-code --role node --ttl 2h --gateway-url "ws://10.0.2.2:$PORT" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["shortCode"])')
printf 'gateway = "ws://10.0.2.2:%s"\nsetup_code = "%s"\nname = "pincer-slow-card"\nhostname = "pincer-slow"\n' \
  "$PORT" "$CODE7" >"$W/slow.toml"
mcopy -o -i "$SLOW_FAT" "$W/slow.toml" ::/pincer.toml
sfdisk --quiet --delete "$W/slow.img" 1
monitor() { # monitor COMMAND: one line to qemu's human monitor; prints the answer
  python3 - "$W/monitor.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
def answer():
    b = b""
    while not b.endswith(b"(qemu) "):
        d = s.recv(4096)
        if not d: break
        b += d
    return b.decode(errors="replace")
answer(); s.sendall(sys.argv[2].encode() + b"\n"); print(answer())
PY
}
boot "$W/console7.log" \
  -drive "file=$W/slow.img,if=virtio,format=raw,file.locking=off" \
  -blockdev "driver=raw,node-name=fat,offset=$((BOOT_START * 512)),size=$((BOOT_SECTORS * 512)),file.driver=file,file.filename=$W/slow.img,file.locking=off" \
  -device pcie-root-port,id=slot1,chassis=1 \
  -monitor "unix:$W/monitor.sock,server=on,wait=off"
check "slow card: without its boot partition pincer-node does not start on defaults (no node.toml)" \
  wait_console "unmet condition check (ConditionPathExists=/etc/pincer/node.toml)" "$W/console7.log"
while [ "$(on_for)" -lt 45 ] && up; do sleep 1; done  # well past the old 20 s device timeout
check "slow card: not listed while the boot partition is missing" test -z "$(node_json pincer-slow-card)"
monitor "device_add virtio-blk-pci,drive=fat,id=fat,bus=slot1" >"$W/monitor.log" 2>&1 || true
T_PLUG=$(on_for)
log "boot partition plugged in ${T_PLUG}s after power-on"
NODE7=$(wait_node pincer-slow-card)
T_SLOW=$(on_for)
check "slow card: pincer.toml applied when the partition appeared, the node paired with its setup code (${T_SLOW}s, plugged at ${T_PLUG}s)" \
  test -n "$NODE7" -a "$NODE7" != "$NODE"
[ -n "$NODE7" ] || { cat "$W/monitor.log" >&2; tail -40 "$W/console7.log" >&2; }
settled "$W/console7.log" || log "pincer-report did not run"
power_cut
mcopy -n -i "$SLOW_FAT" ::/pincer-applied.txt "$W/applied7.txt" 2>/dev/null || true
mcopy -n -i "$SLOW_FAT" ::/pincer.toml "$W/slow.toml.after" 2>/dev/null || true
check "slow card: pincer-applied.txt says pincer-node was restarted with the new settings, no pincer-error.txt, the setup code moved off" \
  bash -c "grep -q 'pincer-node: restarted' '$W/applied7.txt' && grep -q 'hostname: pincer-slow' '$W/applied7.txt' \
    && ! mdir -b -i '$SLOW_FAT' ::/ | grep -q pincer-error.txt && ! grep -q '$CODE7' '$W/slow.toml.after'"

echo "image-test: power-on to node listed: ${T_PAIRED}s (first boot, TCG); reconnect on second boot: ${T_RECONNECT}s; slow card: partition at ${T_PLUG}s, node listed at ${T_SLOW}s" >&2
echo "image-test: $PASS passed, $FAIL failed ($(( $(date +%s) - T0 ))s in all)" >&2
[ "$FAIL" -eq 0 ]
