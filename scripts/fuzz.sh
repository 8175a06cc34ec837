#!/usr/bin/env bash
# Fuzzes the decoders of hostile bytes (fuzz/README.md) with cargo-fuzz on nightly.
#   scripts/fuzz.sh --smoke          every target for PINCER_FUZZ_SECONDS (default 15) each
#   scripts/fuzz.sh [TARGET] [RUNS]  a campaign: RUNS inputs (default 10,000,000) per target
# Installs what it needs: the nightly toolchain (minimal) and cargo-fuzz (pinned). Exits non-zero
# on the first crash, leak, timeout or out-of-memory, with the input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.1

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >/dev/null
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >/dev/null
fi

targets=(frame params node_invoke wav pixels x11_setup weight ws_meter provider_stream)
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
if [ -n "${1:-}" ]; then targets=("$1"); fi
runs=${2:-10000000}
corpus_root=${CARGO_TARGET_DIR:-$PWD/target}/fuzz-corpus

for t in "${targets[@]}"; do
  corpus="$corpus_root/$t"
  mkdir -p "$corpus"
  seeds=()
  case $t in frame | params | node_invoke | weight) seeds=(tests/corpus) ;; esac
  # -rss_limit_mb: a decoder that allocates past 1 GiB for a small input is a finding
  limits=(-rss_limit_mb=1024 -timeout=10 -max_len=65536)
  if [ "$smoke" = 1 ]; then
    limits+=("-max_total_time=${PINCER_FUZZ_SECONDS:-15}")
  else
    limits+=("-runs=$runs")
  fi
  echo "fuzz: $t (${limits[*]})" >&2
  start=$(date +%s)
  log=$(mktemp)
  if ! (cd fuzz && cargo +nightly fuzz run "$t" "$corpus" "${seeds[@]/#/../}" -- "${limits[@]}") >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED; the input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs_done=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  rm -f "$log"
  echo "fuzz: $t ok: ${runs_done:-?} inputs in $(( $(date +%s) - start ))s, corpus $(find "$corpus" -type f | wc -l)" >&2
done
