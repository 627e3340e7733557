#!/usr/bin/env bash
# CI: checks that every fuzz target in fuzz/ compiles. A type check only:
# building with the fuzzer's instrumentation takes over ten minutes on two
# cores and would catch nothing more. It needs neither cargo-fuzz nor a
# nightly toolchain, and leaves out libFuzzer's C++ build (the `libfuzzer`
# feature). To build and run the targets: scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# Share the workspace's target directory: the dependencies already checked
# for clippy are reused instead of being checked (and stored) a second time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
cargo check --bins --no-default-features --quiet
echo "fuzz targets compile: $(grep -c '^\[\[bin\]\]' Cargo.toml)"
