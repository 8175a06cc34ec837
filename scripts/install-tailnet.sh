#!/usr/bin/env bash
# Builds the pinned Tailscale (tailscaled + tailscale, v1.102.5) and headscale (v0.29.3, the
# self-hosted control server) from the Go module proxy into a cache folder, once per version.
# Prints TAILSCALED=..., TAILSCALE=... and HEADSCALE=... at the end. The tests that run a
# tailnet (in network namespaces of their own, no internet) take these.
#
# v1.104.x needs Go >= 1.27.4; v1.102.5 builds with Go 1.26. `go install headscale@v0.29.3`
# fails (the proxy refuses the module's version list, which go install reads for
# deprecations), so headscale is built from a small module that requires it.
set -euo pipefail

TAILSCALE_VERSION=1.102.5
HEADSCALE_VERSION=0.29.3
CACHE="${PINCER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pincer}/tailnet-ts${TAILSCALE_VERSION}-hs${HEADSCALE_VERSION}"
BIN="$CACHE/bin"

installed() {
  [ -x "$BIN/tailscaled" ] && [ -x "$BIN/tailscale" ] && [ -x "$BIN/headscale" ]
}

if ! installed; then
  command -v go >/dev/null || { echo "install-tailnet: needs Go (>= 1.26)" >&2; exit 1; }
  mkdir -p "$BIN" "$CACHE/headscale-build"
  export GOTOOLCHAIN=local CGO_ENABLED=0
  GOBIN="$BIN" go install -ldflags "-s -w" \
    "tailscale.com/cmd/tailscaled@v${TAILSCALE_VERSION}" \
    "tailscale.com/cmd/tailscale@v${TAILSCALE_VERSION}"
  cd "$CACHE/headscale-build"
  cat > go.mod <<MOD
module pincer.test/headscale-build

go 1.26

require github.com/juanfont/headscale v${HEADSCALE_VERSION}
MOD
  cat > tools.go <<'SRC'
//go:build tools

package tools

import _ "github.com/juanfont/headscale/cmd/headscale"
SRC
  go mod tidy >/dev/null 2>&1 || go mod download github.com/juanfont/headscale
  go build -ldflags "-s -w" -o "$BIN/headscale.tmp" github.com/juanfont/headscale/cmd/headscale
  mv "$BIN/headscale.tmp" "$BIN/headscale"
  installed || { echo "install-tailnet: the build did not produce all three binaries in $BIN" >&2; exit 1; }
fi
echo "TAILSCALED=$BIN/tailscaled"
echo "TAILSCALE=$BIN/tailscale"
echo "HEADSCALE=$BIN/headscale"
