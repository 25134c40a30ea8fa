#!/usr/bin/env bash
# Builds in release and runs gw-fanout (issue 5): one guild, one channel, 1000 / 5000 / 10000
# connected members, messages at 10 and 50 per second for 20 s each, against hearth and nginx +
# Nchan (as many workers as hearth has shards). Installs nginx + Nchan from Debian if missing
# (root). Waits (up to WAIT_RUSTC_S, checking every 30 s) until no rustc runs, since the 2 vCPUs
# are shared with builds; runs anyway after that, at nice -19 (root), and says so in the results.
# About 6 minutes once built and quiet. Results land in bench/results/gw-fanout-<UTC stamp>/,
# with a README.md written by this script next to the harness's summary.md.
#
# Environment overrides: TARGETS, SHARDS, MEMBERS, RATES, DURATION_S, WARMUP_MESSAGES,
# CONTENT_BYTES, RING_ENTRIES, OUT_DIR, SERVER_CORE, CLIENT_CORE, NICE, WAIT_RUSTC_S,
# CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGETS="${TARGETS:-hearth,nchan}"
SHARDS="${SHARDS:-1}"
MEMBERS="${MEMBERS:-1000,5000,10000}"
RATES="${RATES:-10,50}"
DURATION_S="${DURATION_S:-20}"
WARMUP_MESSAGES="${WARMUP_MESSAGES:-5}"
CONTENT_BYTES="${CONTENT_BYTES:-64}"
# hearth's bench profile has 1024 ring entries (a 2048-entry completion queue). With it, a run
# at 10000 members stalls: after the first fan-out the engine never reads the sender's HTTP
# connection again (likely: the completion queue overflows, the kernel ends multishot receives
# without IORING_CQE_F_MORE, and the engine re-arms a receive only after ENOBUFS; see
# bench/README.md). 16384 entries (a 32768-entry completion queue) hold a whole 10k fan-out.
# Set RING_ENTRIES=0 to run the profile as it is.
RING_ENTRIES="${RING_ENTRIES:-16384}"
OUT_DIR="${OUT_DIR:-bench/results}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
WAIT_RUSTC_S="${WAIT_RUSTC_S:-600}"
RUSTC_POLL_S=30
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--19}"; else NICE="${NICE:-0}"; fi

# The servers and the harness inherit this; the harness raises it again (hard limit 20000).
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

waited=0
busy="$(pgrep -c rustc || true)"
while [[ "$busy" != 0 && "$waited" -lt "$WAIT_RUSTC_S" ]]; do
    echo "waiting for $busy rustc process(es) to finish ($waited s of at most $WAIT_RUSTC_S s)"
    sleep "$RUSTC_POLL_S"
    waited=$((waited + RUSTC_POLL_S))
    busy="$(pgrep -c rustc || true)"
done
if [[ "$busy" == 0 ]]; then
    quiet="no rustc running when the run started (waited $waited s for other builds)"
else
    quiet="$busy rustc process(es) still running after waiting $waited s: run anyway at nice $NICE (servers and harness in their own autogroup), so other builds shared the 2 vCPUs"
fi
echo "$quiet"

BIN="$CARGO_TARGET_DIR/release/hearth-bench"
args=(gw-fanout --targets "$TARGETS" --shards "$SHARDS" --server-core "$SERVER_CORE"
      --client-core "$CLIENT_CORE" --nice "$NICE" --out-dir "$OUT_DIR" --members "$MEMBERS"
      --rates "$RATES" --duration-s "$DURATION_S" --warmup-messages "$WARMUP_MESSAGES"
      --content-bytes "$CONTENT_BYTES" --ring-entries "$RING_ENTRIES" --note "$quiet")
dir="$("$BIN" "${args[@]}" | tail -n 1)"
busy_end="$(pgrep -c rustc || true)"
if [[ "$busy_end" == 0 ]]; then
    quiet_end="no rustc running when it ended"
else
    quiet_end="$busy_end rustc process(es) running when it ended: builds started during the run and shared the 2 vCPUs (the servers and the harness ran at nice $NICE in their own autogroup)"
fi

cat > "$dir/README.md" <<EOF
# gw-fanout results

Written by \`bench/run-fanout.sh\`; the numbers, tables, ratios and the issue's targets are in
[summary.md](summary.md), every figure in results.json, plots in the SVG files.

- Command: \`$BIN ${args[*]}\`
- Machine load: $quiet; $quiet_end.
- Nice: $NICE for hearth, nginx and the harness (client threads and sender).
- Hearth ran with its bench profile's \`ring_entries\` overridden to $RING_ENTRIES (0: not
  overridden): with the profile's 1024 entries the engine stops reading the sender's HTTP
  connection after the first fan-out to 10000 sessions (see bench/README.md, gw-fanout).
EOF
echo "results in $dir"
