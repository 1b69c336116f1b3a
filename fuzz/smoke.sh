#!/usr/bin/env bash
# A short run of every fuzz target (CI's smoke test; fuzz/README.md says how to fuzz for real).
# Needs the nightly toolchain; installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")"
RUNS="${FUZZ_SMOKE_RUNS:-200000}"
SECONDS_EACH="${FUZZ_SMOKE_SECONDS:-15}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "error: fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The lock file is committed: refuse to build with anything else.
cargo +nightly fetch --locked --quiet
# No sanitizer: the core forbids unsafe code, so what these runs look for (panics, overflow
# checks, unbounded allocation, hangs) needs none, and builds and runs are several times faster.
cargo +nightly fuzz build --sanitizer none
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    dirs=("corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    echo "-- fuzz $target: $RUNS runs or ${SECONDS_EACH}s"
    log="$(mktemp)"
    if ! cargo +nightly fuzz run --sanitizer none "$target" "${dirs[@]}" -- \
        -runs="$RUNS" -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "error: fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
    rm -f "$log"
done
