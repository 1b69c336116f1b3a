#!/usr/bin/env bash
# Smoke test of the experiments (run by .ci/run): the quick mode of every subcommand, then checks
# that each wrote its results and that the numbers are sane. Needs the release binaries
# (cargo build --release --bins) and the prerequisites of scripts/install-prereqs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/experiments-smoke}
rm -rf "$out"
# The release binaries are where cargo put them (CARGO_TARGET_DIR, as the browser tests honour it);
# the experiments start the other binaries from the same place.
release=${CARGO_TARGET_DIR:-target}/release
export OWNSTREAM_BIN_DIR=${OWNSTREAM_BIN_DIR:-$release}
bin=$release/experiments

fail() { echo "experiments smoke test FAILED: $*" >&2; exit 1; }
need() { [ -s "$1" ] || fail "$1 is missing or empty"; }
# csv_field FILE ROW COLUMN-NAME: the value of a column (by header name) in data row ROW (1-based).
csv_field() {
  awk -F, -v row="$2" -v name="$3" 'NR==1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    NR == row + 1 { print $col }' "$1"
}

echo "== experiments security --quick"
$bin security --quick --out "$out/security"
for f in security.csv summary.md fig12-rsa-keygen.svg fig12-rsa-keygen.png fig13-security-overhead.svg fig13-security-overhead.png; do
  need "$out/security/$f"
done
integrity=$(grep '^"integrity' "$out/security/security.csv" | cut -d, -f3)
awk -v v="$integrity" 'BEGIN { exit !(v > 0 && v < 50) }' || fail "integrity check median $integrity ms is not sane"

echo "== experiments scale --quick"
$bin scale --quick --out "$out/scale"
for f in scale.csv latency.csv summary.md scale-cpu.svg scale-cpu.png; do need "$out/scale/$f"; done
rows=$(($(wc -l < "$out/scale/scale.csv") - 1))
[ "$rows" -ge 1 ] || fail "scale.csv has no step"
mbps=$(csv_field "$out/scale/scale.csv" 1 relayed_mbps)
awk -v v="$mbps" 'BEGIN { exit !(v > 1 && v < 1000) }' || fail "relayed Mbit/s $mbps is not sane"
hop=$(csv_field "$out/scale/latency.csv" 1 hop_ms_median)
awk -v v="$hop" 'BEGIN { exit !(v > 0 && v < 5000) }' || fail "per-hop latency $hop ms is not sane"

echo "== experiments scale --quick --topology chain --latency low (a chain: depth = viewers)"
$bin scale --quick --topology chain --latency low --out "$out/scale-chain"
need "$out/scale-chain/glass.csv"
last=$(($(wc -l < "$out/scale-chain/scale.csv") - 1))
n=$(csv_field "$out/scale-chain/scale.csv" "$last" receivers)
depth=$(csv_field "$out/scale-chain/scale.csv" "$last" depth)
[ "$depth" = "$n" ] || fail "a chain of $n viewers has depth $depth"
glass=$(awk -F, -v n="$n" '$1 == n && $2 == n { print $3 }' "$out/scale-chain/glass.csv")
awk -v v="$glass" 'BEGIN { exit !(v > 0 && v < 5000) }' || fail "glass-to-glass at depth $n is '$glass' ms"

echo "== experiments failures --quick"
$bin failures --quick --out "$out/failures"
for f in results.csv summary.md fig6-uniform.svg fig6-uniform.png fig11-average-stalled-time.svg fig11-average-stalled-time.png; do
  need "$out/failures/$f"
done
kills=$(csv_field "$out/failures/results.csv" 1 kills)
[ "$kills" -ge 15 ] && [ "$kills" -le 20 ] || fail "$kills kills, expected about 20 (2/s for 10 s)"
repairs=$(csv_field "$out/failures/results.csv" 1 repairs)
[ "$repairs" -ge 1 ] || fail "no repair after $kills kills"

echo "== experiments failures --merge (pools grids run in parts; refuses a run twice)"
$bin failures --out "$out/failures-merged" --merge "$out/failures/results.csv"
need "$out/failures-merged/summary.md"
[ "$(csv_field "$out/failures-merged/results.csv" 1 kills)" = "$kills" ] || fail "merge changed the run's kills"
if $bin failures --out "$out/failures-twice" --merge "$out/failures/results.csv,$out/failures/results.csv" 2>/dev/null; then
  fail "merge took the same run twice"
fi

echo "== experiments failures --sim --quick"
$bin failures --sim --quick --out "$out/failures-sim"
for f in results.csv summary.md fig6-uniform.svg fig6-uniform.png; do need "$out/failures-sim/$f"; done
skills=$(csv_field "$out/failures-sim/results.csv" 1 kills)
[ "$skills" -eq 20 ] || fail "simulated run: $skills kills, expected 20 (2/s for 10 s)"
slost=$(csv_field "$out/failures-sim/results.csv" 1 chunks_lost_by_survivors)
[ "$slost" -eq 0 ] || fail "simulated run: survivors lost $slost chunks"

echo "== experiments flood --quick"
$bin flood --quick --out "$out/flood"
need "$out/flood/flood.csv"
need "$out/flood/defaults.json"
fjoins=$(csv_field "$out/flood/flood.csv" 1 honest_joins)
[ "$fjoins" -ge 5 ] || fail "flood: only $fjoins honest joins"
ffailed=$(csv_field "$out/flood/flood.csv" 1 honest_failures)
[ "$ffailed" -eq 0 ] || fail "flood: $ffailed honest joins failed"
fpeak=$(csv_field "$out/flood/flood.csv" 1 rss_mib_peak)
awk -v v="$fpeak" 'BEGIN { exit !(v > 1 && v < 200) }' || fail "flood: supervisor peak RSS $fpeak MiB is not sane"

echo "experiments smoke test passed: integrity check ${integrity} ms, ${mbps} Mbit/s relayed, ${hop} ms per hop, ${kills} kills and ${repairs} repairs, flood peak RSS ${fpeak} MiB"
