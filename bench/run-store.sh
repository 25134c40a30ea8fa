#!/usr/bin/env bash
# The store benchmark of issue 4: Hearth's msgstore against RocksDB 7.8.3 (Debian librocksdb) on
# the same message workload, same durability (every acknowledged append fdatasync'd, group
# commit), one core. Installs librocksdb-dev if missing (root), builds store-bench in release
# with the `rocksdb` feature and runs it. Results land in bench/results/store-<UTC stamp>/.
#
# Besides the max-throughput phase (CONCURRENCY appends always outstanding), both stores get the
# same fixed offered rates (RATES appends/s, RATE_PHASE_S seconds each, latency from each
# append's due time), where an append p99 means something other than queueing.
#
# Environment overrides: MESSAGES, CHANNELS, CONCURRENCY, RATES, RATE_PHASE_S, CORE, NICE,
# DATA_DIR, OUT_DIR, ENGINES, WAIT_FOR_BUILDS (seconds to wait for running rustc processes to finish, default 900),
# CARGO_TARGET_DIR. Extra arguments go to store-bench (e.g. --note "...").
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
MESSAGES="${MESSAGES:-600000}"
CHANNELS="${CHANNELS:-1000}"
CONCURRENCY="${CONCURRENCY:-64}"
RATES="${RATES:-5000,9000,18000}"
RATE_PHASE_S="${RATE_PHASE_S:-8}"
CORE="${CORE:-0}"
DATA_DIR="${DATA_DIR:-/var/tmp/hearth-store-bench}"
OUT_DIR="${OUT_DIR:-bench/results}"
ENGINES="${ENGINES:-hearth,rocksdb}"
WAIT_FOR_BUILDS="${WAIT_FOR_BUILDS:-900}"

if [[ ! -e /usr/include/rocksdb/c.h ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "librocksdb-dev is missing; install it as root: apt-get install librocksdb-dev" >&2
        exit 1
    fi
    apt-get update
    apt-get install -y --no-install-recommends librocksdb-dev rocksdb-tools
fi

cargo build --release -p bench --features rocksdb --bin store-bench

# The 2 vCPUs are shared with builds: wait for compilers to finish, then run at nice -19 as
# root (dropping the page cache for the cold reads needs root too).
waited=0
while [[ "$(pgrep -c rustc || true)" != 0 && "$waited" -lt "$WAIT_FOR_BUILDS" ]]; do
    sleep 30
    waited=$((waited + 30))
done
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--19}"; else NICE="${NICE:-0}"; fi

"$CARGO_TARGET_DIR/release/store-bench" --messages "$MESSAGES" --channels "$CHANNELS" \
    --concurrency "$CONCURRENCY" --rates "$RATES" --rate-phase-s "$RATE_PHASE_S" --core "$CORE" --nice "$NICE" --data-dir "$DATA_DIR" \
    --out-dir "$OUT_DIR" --engines "$ENGINES" "$@"
