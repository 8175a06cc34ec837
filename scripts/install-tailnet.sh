#!/usr/bin/env bash
# Builds the pinned Tailscale (tailscaled + tailscale, v1.102.5) and headscale (v0.29.3, the
# self-hosted control server) from the Go module proxy into a cache folder, once per version.
# Prints TAILSCALED=..., TAILSCALE=... and HEADSCALE=... at the end. The tests that run a
# tailnet (in network namespaces of their own, no internet) take these.
#
#   scripts/install-tailnet.sh --board arm64|armv7|armv6
#
# instead cross-builds the board's Tailscale for the SD image: one stripped static binary
# (CGO_ENABLED=0, GOARCH=arm64, or arm with GOARM=7 / 6) with the CLI built in
# (-tags ts_include_cli: run as `tailscale` it is the CLI, as `tailscaled` the daemon), and
# without what a headless board does not use (BOARD_OMIT below: Tailscale SSH, Taildrop,
# Drive, the web client, cloud and desktop integrations...). Prints TAILSCALE_BOARD=...
# (arm64: 22 MB, ~6 MB of the xz image; ~2 min to build cold on 2 cores, seconds from Go's
# build cache).
#
# v1.104.x needs Go >= 1.27.4; v1.102.5 builds with Go 1.26. `go install headscale@v0.29.3`
# fails (the proxy refuses the module's version list, which go install reads for
# deprecations), so headscale is built from a small module that requires it.
set -euo pipefail

TAILSCALE_VERSION=1.102.5
HEADSCALE_VERSION=0.29.3
CACHE="${PINCER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pincer}/tailnet-ts${TAILSCALE_VERSION}-hs${HEADSCALE_VERSION}"
BIN="$CACHE/bin"

# Features left out of the board's build (ts_omit_<name>; the names are Tailscale's
# feature/featuretags). Kept: kernel TUN and netstack (Serve), the CLI, serve, DNS through
# systemd-resolved, iptables/nftables, portmapper, logging off by the flag, auth keys.
BOARD_OMIT="aws bird tap kube completion ssh wakeonlan capture relayserver taildrop tpm syspolicy
  debugeventbus webclient drive flashappliance synology systray appconnectors conn25 clientupdate
  qrcodes posture identityfederation networkmanager"

if [ "${1:-}" = --board ]; then
  arch=${2:-}
  case "$arch" in
    arm64) goenv=(GOARCH=arm64) ;;
    armv7) goenv=(GOARCH=arm GOARM=7) ;;
    armv6) goenv=(GOARCH=arm GOARM=6) ;;
    *) echo "install-tailnet: --board arm64|armv7|armv6" >&2; exit 2 ;;
  esac
  tags=ts_include_cli
  for f in $BOARD_OMIT; do tags="$tags,ts_omit_$f"; done
  # the version stamps Tailscale's own release builds set (without them: "-ERR-BuildInfo")
  ldflags="-s -w -X tailscale.com/version.longStamp=${TAILSCALE_VERSION}-pincer -X tailscale.com/version.shortStamp=${TAILSCALE_VERSION}"
  key=$(printf '%s\n' "$arch" "$tags" "$ldflags" | sha256sum | cut -c1-12)
  out="$CACHE/board-$arch-$key/tailscaled"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null || { echo "install-tailnet: needs Go (>= 1.26)" >&2; exit 1; }
    gopath="$CACHE/board-gopath"
    # go install puts cross-built binaries under GOPATH/bin/GOOS_GOARCH (it refuses GOBIN for
    # them): a GOPATH of its own, the module and build caches where they always are
    rm -rf "${gopath:?}/bin"
    env GOTOOLCHAIN=local CGO_ENABLED=0 GOOS=linux "${goenv[@]}" \
      GOMODCACHE="$(go env GOMODCACHE)" GOCACHE="$(go env GOCACHE)" GOPATH="$gopath" \
      go install -trimpath -tags "$tags" -ldflags "$ldflags" "tailscale.com/cmd/tailscaled@v${TAILSCALE_VERSION}" >&2
    built=$(find "$gopath/bin" -type f -name tailscaled | head -1)
    [ -n "$built" ] || { echo "install-tailnet: go install left no tailscaled under $gopath/bin" >&2; exit 1; }
    mkdir -p "$(dirname "$out")"
    mv "$built" "$out.tmp"
    mv "$out.tmp" "$out"
    # builds of this architecture with other flags are not used any more
    find "$CACHE" -maxdepth 1 -name "board-$arch-*" ! -name "board-$arch-$key" -exec rm -rf {} +
  fi
  echo "TAILSCALE_BOARD=$out"
  exit 0
fi

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
