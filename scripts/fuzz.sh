#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for N seconds (default 60),
# one after the other. A target that crashes stops there; the others still
# run, and the script exits non-zero at the end.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Crash inputs go to $FUZZ_ARTIFACTS/<target>/ (default fuzz/artifacts), each
# run's output to $FUZZ_ARTIFACTS/<target>.log, the growing corpus to
# fuzz/corpus/<target>/ (all ignored by git). Reproduce a
# crash with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer); RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them, as no nightly is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
artifacts="${FUZZ_ARTIFACTS:-$PWD/fuzz/artifacts}"
export RUSTC_BOOTSTRAP=1
# The wal_record target writes a scratch segment per input: keep it in
# memory when possible, and remove it at the end.
scratch_parent=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_parent=/dev/shm; fi
TMPDIR="$(mktemp -d "$scratch_parent/miru-fuzz.XXXXXX")"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== build (release, instrumented)"
for t in "${targets[@]}"; do
  cargo fuzz build "$t"
done

failed=()
summary=()
for t in "${targets[@]}"; do
  echo "== $t: ${seconds}s"
  mkdir -p "$artifacts/$t" "corpus/$t"
  log="$artifacts/$t.log"
  if cargo fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -artifact_prefix="$artifacts/$t/" 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE|pulse)|Done |==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix|Test unit written)'; then
    :
  fi
  if grep -qE '^Done [0-9]+ runs' "$log"; then
    summary+=("$t: ok, $(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+') runs")
  else
    runs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')"
    summary+=("$t: CRASH after ${runs:-?} runs, input in $artifacts/$t/")
    failed+=("$t")
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
[ "${#failed[@]}" -eq 0 ]
