#!/usr/bin/env bash
# Runs every test: unit, property and scenario tests of the core, and the end-to-end tests over real
# WebRTC on loopback (they start a supervisor, a broadcaster and headless receivers as processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prereqs.sh
# The end-to-end tests run the workspace's binaries, so build them all first.
cargo build --workspace --bins
cargo test --workspace "$@"
