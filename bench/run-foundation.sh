#!/usr/bin/env bash
# Builds in release and runs the foundation benchmarks (pingpong + idle-conns) against hearth,
# monoio and glommio with the default figures: 1000 conns at 40k req/s for 20 s after 5 s of
# warm-up, and 19000 idle connections. Results land in bench/results/<scenario>-<UTC stamp>/.
#
# Environment overrides: TARGETS, DURATION_S, WARMUP_S, CONNS, RATE, IDLE_CONNS, OUT_DIR,
# SERVER_CORE, CLIENT_CORE, NICE, CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGETS="${TARGETS:-hearth,monoio,glommio}"
DURATION_S="${DURATION_S:-20}"
WARMUP_S="${WARMUP_S:-5}"
CONNS="${CONNS:-1000}"
RATE="${RATE:-40000}"
IDLE_CONNS="${IDLE_CONNS:-19000}"
OUT_DIR="${OUT_DIR:-bench/results}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
# The 2 vCPUs are shared with builds: as root, run server and load generator at nice -19 so they
# do not queue behind compilers (recorded in the results). Lowering nice needs root.
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--19}"; else NICE="${NICE:-0}"; fi

# Servers and clients inherit this; the harness raises it again itself (hard limit 20000 here).
ulimit -n "$(ulimit -Hn)"

cargo build --release -p bench --bins
if [[ ",$TARGETS," == *",hearth,"* ]]; then
    cargo build --release -p engine --bin hearth
fi

BIN="$CARGO_TARGET_DIR/release/hearth-bench"
common=(--targets "$TARGETS" --server-core "$SERVER_CORE" --client-core "$CLIENT_CORE"
        --nice "$NICE" --out-dir "$OUT_DIR")

"$BIN" pingpong "${common[@]}" --conns "$CONNS" --rate "$RATE" \
    --duration-s "$DURATION_S" --warmup-s "$WARMUP_S"
"$BIN" idle-conns "${common[@]}" --conns "$IDLE_CONNS"

echo "results in $OUT_DIR:"
ls -1d "$OUT_DIR"/*/ | tail -n 2
