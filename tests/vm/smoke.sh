#!/bin/bash
# Smoke test of the VM harness itself: builds the VM with a stand-in "node" (a static C program
# that prints its argv, sleeps 2 s and exits 3), serves HTTP on the host's 127.0.0.1, boots the
# VM with pincer.debug and checks the console: vivid capture node, ALSA loopback, bochs fb0 with
# the red/blue pattern, a frame read from /dev/video0, HTTP to the host, the node's argv and exit.
#   tests/vm/smoke.sh [WORK_DIR]      (needs gcc with static libc; installs qemu etc. via build.sh)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-$(mktemp -d "${TMPDIR:-/tmp}/pincer-vm-smoke.XXXXXX")}
mkdir -p "$W/www"
HTTP_PID=
cleanup() { [ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null; }
trap cleanup EXIT

# shellcheck source=../../scripts/need.sh
. "$HERE/../../scripts/need.sh"
need gcc gcc libc6-dev
cat > "$W/fake-node.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (int i = 0; i < argc; i++) printf("fake-node argv[%d]=%s\n", i, argv[i]);
  const char *e = getenv("RUST_LOG"); printf("fake-node RUST_LOG=%s\n", e ? e : "(unset)");
  fflush(stdout); sleep(2); return 3;
}
C
gcc -static -O2 -o "$W/fake-node" "$W/fake-node.c" || exit 1

t0=$(date +%s.%N)
"$HERE/build.sh" "$W/out" "$W/fake-node" "$HERE/README.md" || exit 1
t1=$(date +%s.%N)

echo pincer-vm-smoke > "$W/www/index.html"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$W/www" > "$W/http.log" 2>&1 &
HTTP_PID=$!
PORT=
for _ in $(seq 50); do
  PORT=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$W/http.log" | head -1); [ -n "$PORT" ] && break; sleep 0.1
done
[ -n "$PORT" ] || { echo "http.server did not start"; exit 1; }

t2=$(date +%s.%N)
timeout 300 "$HERE/boot.sh" "$W/out" --cmdline "pincer.debug pincer.probe=10.0.2.2:$PORT" -- \
  run --gateway ws://10.0.2.2:18789 --token T --caps camera,screen,audio --state-dir /tmp/node \
  2>&1 | tr -d '\r' > "$W/console.log"
t3=$(date +%s.%N)
grep -a 'PINCER-VM\|fake-node' "$W/console.log"

pass=0; fail=0
check() { # check DESCRIPTION EXTENDED-REGEX
  if grep -aqE "$2" "$W/console.log"; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1 (/$2/)"; fi
}
check "READY"                 'PINCER-VM READY uptime='
check "vivid capture video0"  'video0: vivid-000-vid-cap'
check "ALSA Loopback card 0"  '^PINCER-VM +0 \[Loopback'
check "ALSA Dummy card 1"     '^PINCER-VM +1 \[Dummy'
check "loopback PCM 0 and 1"  'pcm 00-01: Loopback PCM : Loopback PCM : playback 8 : capture 8'
check "bochs is fb0, 32 bpp"  'fb0: name=bochs-drmdrmfb virtual_size=[0-9]+,[0-9]+ bpp=32'
check "one DRM card"          'fb: /dev/dri/card0 /dev/fb0 '
check "fb0 top-left red"      'debug fb0 \(0,0\): +00 00 ff ff 00 00 ff ff'
check "fb0 bottom-right blue" 'debug fb0 \(W-1,H-1\): ff 00 00 ff ff 00 00 ff'
check "video0 frame read"     'debug video0 read\(\): 460800 bytes'
check "HTTP to host"          "debug probe http://10.0.2.2:$PORT/: HTTP/1.0 200 OK"
check "node argv"             'fake-node argv\[9\]=/tmp/node'
check "RUST_LOG"              'fake-node RUST_LOG=info'
check "node exit code"        'PINCER-VM NODE EXIT 3'
check "power off"             'reboot: Power down'
b=$(sed -n 's/.*sha1 of visible rows: //p' "$W/console.log"); a=$(sed -n 's/.*sha1 after node: //p' "$W/console.log")
if [ -n "$b" ] && [ "$b" = "$a" ]; then pass=$((pass+1)); echo "ok   fb0 unchanged while the node ran"; else fail=$((fail+1)); echo "FAIL fb0 changed ($b -> $a)"; fi
ready=$(sed -n 's/.*READY uptime=\([0-9.]*\)s.*/\1/p' "$W/console.log")
printf 'vm-smoke: build %.1f s, boot to poweroff %.1f s (guest uptime at READY %s s)\n' \
  "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t3 - $t2}")" "$ready"
echo "vm-smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
