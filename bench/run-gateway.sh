#!/usr/bin/env bash
# Builds in release and runs the gateway benchmarks against hearth and nginx + Nchan with the
# default figures: an identify storm of 5000 sessions (256 in flight), 19000 identified idle
# sessions held 50 s, and a broadcast of 20 + 200 events of ~250 bytes to 10000 sessions at
# 50 events/s. Installs nginx + Nchan from Debian if missing (root). About 5 minutes once built.
# Results land in bench/results/<scenario>-<UTC stamp>/.
#
# Environment overrides: TARGETS, SHARDS, STORM_SESSIONS, INFLIGHT, IDLE_SESSIONS, HOLD_S,
# BROADCAST_SESSIONS, EVENTS, WARMUP_EVENTS, RATE, EVENT_BYTES, OUT_DIR, SERVER_CORE,
# CLIENT_CORE, NICE, CARGO_TARGET_DIR, SCENARIOS (any of storm,idle,broadcast).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGETS="${TARGETS:-hearth,nchan}"
SHARDS="${SHARDS:-1}"
STORM_SESSIONS="${STORM_SESSIONS:-5000}"
INFLIGHT="${INFLIGHT:-256}"
IDLE_SESSIONS="${IDLE_SESSIONS:-19000}"
HOLD_S="${HOLD_S:-50}"
BROADCAST_SESSIONS="${BROADCAST_SESSIONS:-10000}"
EVENTS="${EVENTS:-200}"
WARMUP_EVENTS="${WARMUP_EVENTS:-20}"
RATE="${RATE:-50}"
EVENT_BYTES="${EVENT_BYTES:-250}"
OUT_DIR="${OUT_DIR:-bench/results}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
SCENARIOS="${SCENARIOS:-storm,idle,broadcast}"
# The 2 vCPUs are shared with builds: as root, run servers and clients at nice -19 so they do
# not queue behind compilers (recorded in the results). Lowering nice needs root.
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--19}"; else NICE="${NICE:-0}"; fi

# Servers and clients inherit this; the harness raises it again itself (hard limit 20000 here).
ulimit -n "$(ulimit -Hn)"

if [[ ",$TARGETS," == *",nchan,"* ]] && [[ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "nginx + Nchan missing; install as root: apt-get install -y --no-install-recommends nginx libnginx-mod-nchan" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-nchan
fi

cargo build --release -p bench --bin hearth-bench
if [[ ",$TARGETS," == *",hearth,"* ]]; then
    cargo build --release -p engine --bin hearth
fi

BIN="$CARGO_TARGET_DIR/release/hearth-bench"
common=(--targets "$TARGETS" --shards "$SHARDS" --server-core "$SERVER_CORE"
        --client-core "$CLIENT_CORE" --nice "$NICE" --out-dir "$OUT_DIR" --inflight "$INFLIGHT")

if [[ ",$SCENARIOS," == *",storm,"* ]]; then
    "$BIN" gw-identify-storm "${common[@]}" --sessions "$STORM_SESSIONS"
fi
if [[ ",$SCENARIOS," == *",idle,"* ]]; then
    "$BIN" gw-idle-sessions "${common[@]}" --sessions "$IDLE_SESSIONS" --hold-s "$HOLD_S"
fi
if [[ ",$SCENARIOS," == *",broadcast,"* ]]; then
    "$BIN" gw-broadcast "${common[@]}" --sessions "$BROADCAST_SESSIONS" --events "$EVENTS" \
        --warmup-events "$WARMUP_EVENTS" --rate "$RATE" --event-bytes "$EVENT_BYTES"
fi

echo "results in $OUT_DIR:"
ls -1dt "$OUT_DIR"/gw-*/ | head -n 3
