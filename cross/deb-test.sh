#!/usr/bin/env bash
# Test of the amd64 package: builds it (cross/deb.sh x86_64-unknown-linux-musl), checks what
# dpkg-deb lists, installs it into a throw-away root with dpkg --root and chrootless
# maintainer scripts (they honour DPKG_ROOT, so the user, the state directory and the unit
# symlinks are made in that root, never on this host), checks every path, mode and owner,
# verifies both units with systemd-analyze (and that it does catch a typo), then removes and
# purges the package and checks what each leaves behind.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# shellcheck source=../scripts/need.sh
. scripts/need.sh
need dpkg-deb dpkg
need systemd-analyze systemd
need deb-systemd-helper init-system-helpers
need useradd passwd
if [ "$(id -u)" -ne 0 ]; then echo "deb-test.sh: SKIPPED, needs root (useradd --prefix, chown in the test root); CI runs as root"; exit 0; fi

fails=0
ok() { printf '  ok    %s\n' "$1"; }
bad() { printf '  FAIL  %s\n' "$1"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

./cross/deb.sh x86_64-unknown-linux-musl
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
DEB="$TARGET_DIR/deb/pincer_${VERSION}_amd64.deb"
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
echo "package $DEB"

# What dpkg-deb says.
info=$(dpkg-deb --info "$DEB")
contents=$(dpkg-deb --contents "$DEB")
check "Package pincer, Architecture amd64" grep -q "Architecture: amd64" <<<"$info"
check "static build: no libc6 dependency" bash -c '! grep -q "libc6" <<<"$1"' _ "$info"
for s in postinst prerm postrm conffiles; do check "control member $s" grep -qw "$s" <<<"$info"; done
check "conffiles list both configs" bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/pincer/node.toml && dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/pincer/gateway.toml' _ "$DEB"
for entry in \
  "-rwxr-xr-x root/root ./usr/bin/pincer-node" \
  "-rwxr-xr-x root/root ./usr/bin/pincer-gateway" \
  "-rw-r--r-- root/root ./lib/systemd/system/pincer-node.service" \
  "-rw-r--r-- root/root ./lib/systemd/system/pincer-gateway.service" \
  "-rw-r--r-- root/root ./etc/pincer/node.toml" \
  "-rw-r--r-- root/root ./etc/pincer/gateway.toml" \
  "-rw-r--r-- root/root ./usr/share/doc/pincer/copyright"; do
  mode=${entry%% *}; rest=${entry#* }; owner=${rest%% *}; path=${rest#* }
  check "contents: $mode $owner $path" grep -qE "^${mode//-/\\-} $owner +[0-9]+ [-0-9]+ [0-9:]+ ${path//./\\.}$" <<<"$contents"
done

# A minimal target system: dpkg's database, and the base accounts and groups Debian has
# (video 44, audio 29, dialout 20).
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$ROOT/etc" "$ROOT/usr/sbin"
touch "$ROOT/var/lib/dpkg/available" "$ROOT/var/lib/dpkg/info/passwd.list"
# passwd (the Depends, for useradd) as installed: the chrootless scripts run this host's copy.
printf 'Package: passwd\nStatus: install ok installed\nPriority: required\nMaintainer: stand-in\nArchitecture: amd64\nVersion: %s\nDescription: stand-in for the host'"'"'s passwd\n\n' \
  "$(dpkg-query -W -f='${Version}' passwd)" >"$ROOT/var/lib/dpkg/status"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$ROOT/etc/passwd"
printf 'root:*:19000:0:99999:7:::\n' >"$ROOT/etc/shadow"
printf 'root:x:0:\ndialout:x:20:\naudio:x:29:\nvideo:x:44:\n' >"$ROOT/etc/group"
printf 'root:*::\ndialout:*::\naudio:*::\nvideo:*::\n' >"$ROOT/etc/gshadow"
chmod 0640 "$ROOT/etc/shadow" "$ROOT/etc/gshadow"
DPKG=(dpkg --root="$ROOT" --force-not-root --force-script-chrootless --log=/dev/null)

host_accounts() { cat /etc/passwd /etc/group | sha256sum; }
host_before=$(host_accounts)
host_state=$(test -e /var/lib/pincer && echo present || echo absent)
echo "install into $ROOT"
"${DPKG[@]}" --install "$DEB"
check "dpkg says installed" bash -c '"${@}" --status pincer | grep -q "^Status: install ok installed"' _ "${DPKG[@]}"
check "this host's accounts untouched" test "$(host_accounts)" = "$host_before"
check "this host's /var/lib/pincer untouched" test "$(test -e /var/lib/pincer && echo present || echo absent)" = "$host_state"
stat_is() { [ "$(stat -c '%a %u:%g' "$ROOT$1")" = "$2" ]; }
uid=$(awk -F: '$1 == "pincer" { print $3 }' "$ROOT/etc/passwd")
gid=$(awk -F: '$1 == "pincer" { print $4 }' "$ROOT/etc/passwd")
check "system user pincer (uid $uid < 1000, nologin, home /var/lib/pincer)" \
  bash -c '[ -n "$1" ] && [ "$1" -lt 1000 ] && grep -q "^pincer:x:$1:$2:[^:]*:/var/lib/pincer:/usr/sbin/nologin$" "$3/etc/passwd"' _ "$uid" "$gid" "$ROOT"
for g in video audio dialout; do check "pincer in group $g" grep -qE "^$g:x:[0-9]+:(.*,)?pincer(,|$)" "$ROOT/etc/group"; done
check "/usr/bin/pincer-node 0755 root" stat_is /usr/bin/pincer-node "755 0:0"
check "/usr/bin/pincer-gateway 0755 root" stat_is /usr/bin/pincer-gateway "755 0:0"
check "units 0644 root" bash -c 'for u in node gateway; do [ "$(stat -c "%a %u:%g" "$1/lib/systemd/system/pincer-$u.service")" = "644 0:0" ] || exit 1; done' _ "$ROOT"
check "/etc/pincer/*.toml 0640 root:pincer" bash -c 'for f in node gateway; do [ "$(stat -c "%a %u:%g" "$1/etc/pincer/$f.toml")" = "640 0:$2" ] || exit 1; done' _ "$ROOT" "$gid"
check "/var/lib/pincer 0750 pincer:pincer" stat_is /var/lib/pincer "750 $uid:$gid"
check "pincer-node.service enabled (multi-user.target.wants)" \
  test "$(readlink "$ROOT/etc/systemd/system/multi-user.target.wants/pincer-node.service")" = /lib/systemd/system/pincer-node.service
check "pincer-gateway.service not enabled" test ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/pincer-gateway.service"
check "installed pincer-node runs" "$ROOT/usr/bin/pincer-node" --version
check "installed pincer-gateway runs" "$ROOT/usr/bin/pincer-gateway" --version

# Unit syntax. systemd-analyze resolves ExecStart= inside --root, so the installed binaries
# are the ones checked. A copy with a typo must fail, or this check proves nothing.
verify() { # verify ROOT UNIT -> systemd-analyze's findings on stderr, non-zero on any
  local out
  out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no --root="$1" "$1/lib/systemd/system/$2" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
  # Unknown keys and bad values are only warnings for systemd: count them as failures.
  if grep -v -e 'is not a symlink' -e 'Failed to open /dev/tty' <<<"$out" | grep -q .; then printf '%s\n' "$out" >&2; return 1; fi
}
# systemd's own units (sysinit.target, ...) as a real system has them, from this host.
for d in /lib/systemd/system /usr/lib/systemd/system; do
  [ -d "$d" ] && [ ! -L "$d" ] && cp -an "$d/." "$ROOT/lib/systemd/system/"
done
for u in pincer-node.service pincer-gateway.service; do
  if verify "$ROOT" "$u"; then ok "systemd-analyze verify $u"; else bad "systemd-analyze verify $u"; fi
done
sed -i 's/^ProtectHome=yes/ProtectHomme=yes/' "$ROOT/lib/systemd/system/pincer-node.service"
if verify "$ROOT" pincer-node.service 2>"$ROOT/typo.err"; then bad "systemd-analyze catches a typo"; else ok "systemd-analyze catches a typo ($(grep -m1 -o "Unknown key[^,]*" "$ROOT/typo.err" || head -c 80 "$ROOT/typo.err"))"; fi
cp configs/pincer-node.service "$ROOT/lib/systemd/system/pincer-node.service"

# Remove keeps conffiles and state; purge deletes both and the unit symlinks.
echo "local state" >"$ROOT/var/lib/pincer/marker"
"${DPKG[@]}" --remove pincer
check "remove: binaries gone" test ! -e "$ROOT/usr/bin/pincer-node"
check "remove: conffiles kept" test -e "$ROOT/etc/pincer/node.toml"
check "remove: state kept" test -e "$ROOT/var/lib/pincer/marker"
"${DPKG[@]}" --purge pincer
check "purge: conffiles gone" test ! -e "$ROOT/etc/pincer/node.toml"
check "purge: state gone" test ! -e "$ROOT/var/lib/pincer"
check "purge: unit symlinks gone" test ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/pincer-node.service"

if [ "$fails" -eq 0 ]; then echo "deb test: all checks passed"; else echo "deb test: $fails check(s) failed"; exit 1; fi
