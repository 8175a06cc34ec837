#!/usr/bin/env bash
# Boots the test VM (x86-64 under TCG) built by tests/vm/build.sh: the one place that holds its
# qemu command line (node/tests/vm_hw.rs, pincer-bench camera and smoke.sh start it through here).
#
#   tests/vm/boot.sh OUT_DIR [--screen WxH] [--cmdline 'pincer.debug ...'] -- NODE ARGS...
#
# OUT_DIR holds vmlinuz and initrd.gz. The guest's clock is set from this host's (pincer.time),
# the board has a bochs display (1024x768 unless --screen), user-mode networking (the host is
# 10.0.2.2), and its console on stdout. NODE ARGS are the guest pincer-node's arguments (no
# spaces inside one). exec: the caller's child process is qemu itself, so killing it stops the VM.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '5p' "$0" >&2; exit 2; }
OUT=$1; shift
DISPLAY_DEV=bochs-display
EXTRA=
while [ $# -gt 0 ]; do
  case "$1" in
    --screen) DISPLAY_DEV="bochs-display,xres=${2%x*},yres=${2#*x}"; shift 2 ;;
    --cmdline) EXTRA=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "boot.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
exec qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot \
  -vga none -device "$DISPLAY_DEV" \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.gz" \
  -append "console=ttyS0 quiet pincer.time=$(date +%s) $EXTRA -- $*" \
  -netdev user,id=n -device virtio-net-pci,netdev=n </dev/null
