#!/usr/bin/env bash
# Time from a supervisor restart to the same tree served again, median of 10, with the stalls the
# 7 receivers saw (supervisor/tests/e2e_supervisor_restart.rs, the ignored measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins
cargo test -p ownstream-supervisor --test e2e_supervisor_restart -- --ignored --nocapture \
    measure_tree_rebuild_time_over_ten_restarts 2>&1 | grep -E '^round|^MEASURED|test result'
