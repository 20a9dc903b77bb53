#!/usr/bin/env bash
# Fuzzes natter-proto: builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS
# (default 20), starting from the committed seed corpus in fuzz/corpus/<target>/. New inputs
# go to a temporary corpus, so the committed one does not churn. Fails on any crash, leak,
# out-of-memory or slow input, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz needs unstable compiler flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1. No sanitizer (-s none): natter-proto forbids unsafe code, and without
# AddressSanitizer each target runs about four times as many inputs (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

# Release build with debug assertions and overflow checks, no sanitizer.
flags=(-O -a -s none)
cargo fuzz build "${flags[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  # IRC frames are up to 8703 bytes (tags and line); natter lines 4096.
  max_len=4200
  [ "$target" = irc_message ] && max_len=9000
  mkdir -p "$work/$target"
  echo "fuzzing $target for ${secs}s"
  # The lines for each new input and the closing dictionary are left out of the log.
  if ! cargo fuzz run "${flags[@]}" "$target" "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -max_len="$max_len" -timeout=10 -print_final_stats=1 2>&1 |
    { grep -Ev '^(#[0-9]+[[:space:]]+(NEW|REDUCE)[[:space:]]|[[:space:]]+NEW_FUNC|"|###### )' || true; }; then
    echo "fuzzing $target failed; the input is in fuzz/artifacts/$target/ (see fuzz/README.md)" >&2
    exit 1
  fi
done
echo "fuzzing passed: every target ran ${secs}s with no crash"
