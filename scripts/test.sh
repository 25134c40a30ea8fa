#!/usr/bin/env bash
# The one test command: formatting, lints, and every test of the workspace.
# CI runs exactly this (`.ci/run`). It installs what the tests need by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests open many sockets; the hard limit on these machines is 20000.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "== installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo nextest (every test of the workspace)"
cargo nextest run --workspace --locked --no-fail-fast --profile "${NEXTEST_PROFILE:-default}"

echo "== doc tests"
cargo test --workspace --locked --doc
