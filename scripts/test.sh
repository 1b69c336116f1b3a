#!/usr/bin/env bash
# Runs every test: unit, property and scenario tests of the core, the handshake over real
# WebSockets, and the end-to-end tests over real WebRTC on loopback (they start a supervisor, a
# broadcaster and headless receivers as processes). Ends with one line of totals.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prereqs.sh
# The end-to-end tests run the workspace's binaries, so build them all first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
