#!/usr/bin/env bash
# Everything CI checks, runnable locally: formatting, lints, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/test.sh "$@"
