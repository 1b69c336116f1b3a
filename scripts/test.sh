#!/usr/bin/env bash
# Runs every test: unit, property and scenario tests of the core, the handshake over real
# WebSockets, the end-to-end tests over real WebRTC on loopback (supervisor, broadcaster and
# headless receivers as processes), then the JavaScript unit tests and the browser tests (Debian's
# Chromium driven by Playwright against the same binaries). Ends with one line of totals.
# Arguments go to `cargo test` (e.g. a test name filter); the JavaScript tests always run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prereqs.sh
# The end-to-end and browser tests run the workspace's binaries, so build them all first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
rust=${PIPESTATUS[0]}
npm test 2>&1 | tee -a "$log"
js=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 }
     /^# pass /     { passed += $3 }
     /^# fail /     { failed += $3 }
     END { printf "%d passed, %d failed\n", passed, failed }' "$log"
[ "$rust" -eq 0 ] && [ "$js" -eq 0 ]
