#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with a Rust toolchain:
# installs what the tests need (Debian and PyPI packages), builds once, and
# runs every test with nextest. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== %s\n' "$*"; }

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python clients used by black-box tests (OpenTelemetry SDK, moto S3 server).
venv="$root/target/pyenv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/python-requirements.txt "$venv/.requirements" 2>/dev/null; then
  log "installing Python test clients into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python-requirements.txt
  cp tests/python-requirements.txt "$venv/.requirements"
fi
export MIRU_TEST_PYTHON="$venv/bin/python"
# Tests that drive real agents fail (instead of skipping) when those are missing.
export MIRU_REQUIRE_EXTERNAL=1

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

log "rustfmt"
cargo fmt --all -- --check
log "clippy"
cargo clippy --workspace --all-targets -- -D warnings
if [ -x scripts/check-fuzz.sh ]; then
  log "fuzz targets compile"
  scripts/check-fuzz.sh
fi
log "tests"
cargo nextest run --workspace --no-fail-fast
