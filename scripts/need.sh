# shellcheck shell=bash
# Sourced by the build and test scripts: host prerequisites from Debian packages.
#
#   . scripts/need.sh
#   need COMMAND PACKAGE...   installs the PACKAGEs when COMMAND is not on PATH
#
# As root with apt-get directly, else through sudo (when it needs no password, or can ask on
# a terminal); otherwise it fails, printing the apt-get line to run. The package lists are
# updated once per script run, before the first install.
NEED_APT_UPDATED=
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null || [ -t 0 ]; then
      sudo=sudo
    else
      echo "missing programs; install them first: sudo apt-get install $*" >&2
      return 1
    fi
  fi
  echo "installing $*" >&2
  if [ -z "$NEED_APT_UPDATED" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    NEED_APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
