#!/usr/bin/env bash
# Builds in release and runs voice-forward (issue 6): rooms × participants × speakers at 50
# packets/s of real Opus, against hearth's per-shard SFU and Janus 1.1.2 VideoRoom (remote
# plain-RTP publishers, SRTP rtp_forwarders) in one invocation, servers pinned to SERVER_CORE
# and the load generator to CLIENT_CORE. Installs janus, janus-tools and libopus-dev from
# Debian if missing (root). Everything stays on 127.0.0.1. Waits (up to WAIT_RUSTC_S, checking
# every 30 s) until no rustc runs, since the 2 vCPUs are shared with builds; runs anyway after
# that and says so. The harness is bounded by RUN_TIMEOUT_S. Results land in
# bench/results/voice-forward-<UTC stamp>/ with a README.md written by this script.
#
# Environment overrides: TARGETS, CONFIGS, MODE, SHARDS, WARMUP_S, DURATION_S, DRAIN_MS,
# RING_ENTRIES, OUT_DIR, SERVER_CORE, CLIENT_CORE, NICE, WAIT_RUSTC_S, RUN_TIMEOUT_S,
# CARGO_TARGET_DIR, HEARTH_BIN (a hearth binary built elsewhere, e.g. from a clean export of a
# commit while the work tree does not build; then hearth is not built here), SOURCE_NOTE (a line
# for the summary saying which source tree the binaries were built from).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGETS="${TARGETS:-hearth,janus}"
# rooms x participants x speakers; a room holds at most 100 participants (the SFU's limit) and
# one configuration at most 9900 (the harness holds a UDP socket and a TLS connection per
# participant; the hard descriptor limit is 20000).
CONFIGS="${CONFIGS:-10x10x2,10x100x2,50x100x2,95x100x2}"
MODE="${MODE:-aead_aes256_gcm_rtpsize}"
SHARDS="${SHARDS:-1}"
WARMUP_S="${WARMUP_S:-3}"
DURATION_S="${DURATION_S:-10}"
DRAIN_MS="${DRAIN_MS:-500}"
# Hearth's bench profile has 1024 ring entries; a packet fans out to up to 99 sends, so the
# completion queue gets the room gw-fanout needed (see bench/README.md, gw-fanout). 0 keeps it.
RING_ENTRIES="${RING_ENTRIES:-16384}"
OUT_DIR="${OUT_DIR:-bench/results}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
WAIT_RUSTC_S="${WAIT_RUSTC_S:-600}"
RUN_TIMEOUT_S="${RUN_TIMEOUT_S:-1800}"
RUSTC_POLL_S=30
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--19}"; else NICE="${NICE:-0}"; fi

# The servers and the harness inherit this; the harness raises it again (hard limit 20000).
ulimit -n "$(ulimit -Hn)"

missing=()
if [[ ",$TARGETS," == *",janus,"* ]] && ! command -v janus > /dev/null; then missing+=(janus janus-tools); fi
if ! pkg-config --exists opus 2> /dev/null; then missing+=(libopus-dev pkg-config); fi
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "missing ${missing[*]}; install as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

cargo build --release -p bench --features opus --bin hearth-bench
hearth_bin_args=()
if [[ -n "${HEARTH_BIN:-}" ]]; then
    hearth_bin_args=(--hearth-bin "$HEARTH_BIN")
elif [[ ",$TARGETS," == *",hearth,"* ]]; then
    cargo build --release -p engine --bin hearth
fi

profile_args=()
tmp_profile=""
if [[ "$RING_ENTRIES" != 0 ]]; then
    tmp_profile="$(mktemp /tmp/hearth-voice-profile-XXXXXX.toml)"
    trap 'rm -f "$tmp_profile"' EXIT
    sed "s/^ring_entries = .*/ring_entries = $RING_ENTRIES/" bench/hearth-profile.toml > "$tmp_profile"
    profile_args=(--hearth-arg "--profile=$tmp_profile")
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
args=(voice-forward --targets "$TARGETS" --configs "$CONFIGS" --mode "$MODE" --shards "$SHARDS"
      --server-core "$SERVER_CORE" --client-core "$CLIENT_CORE" --nice "$NICE"
      --out-dir "$OUT_DIR" --warmup-s "$WARMUP_S" --duration-s "$DURATION_S"
      --drain-ms "$DRAIN_MS" "${profile_args[@]}" "${hearth_bin_args[@]}" --note "$quiet")
if [[ -n "${SOURCE_NOTE:-}" ]]; then args+=(--note "$SOURCE_NOTE"); fi
dir="$(timeout --signal=TERM "$RUN_TIMEOUT_S" "$BIN" "${args[@]}" | tail -n 1)"
busy_end="$(pgrep -c rustc || true)"
if [[ "$busy_end" == 0 ]]; then
    quiet_end="no rustc running when it ended"
else
    quiet_end="$busy_end rustc process(es) running when it ended: builds started during the run and shared the 2 vCPUs"
fi

cat > "$dir/README.md" <<EOM
# voice-forward results

Written by \`bench/run-voice.sh\`; the numbers, tables, ratios and issue 6's targets are in
[summary.md](summary.md), every figure in results.json, plots in the SVG files.

- Command: \`$BIN ${args[*]}\`
- Machine load: $quiet; $quiet_end.
- Nice: $NICE for hearth, janus and the harness.
- hearth binary: ${HEARTH_BIN:-built by this script from the work tree}. ${SOURCE_NOTE:-}
- Hearth ran with bench/hearth-profile.toml's \`ring_entries\` set to $RING_ENTRIES (0: not
  overridden).
- Janus: $(dpkg-query -W -f '${Package} ${Version}' janus 2> /dev/null || echo "janus (version unknown)"); libopus: $(pkg-config --modversion opus 2> /dev/null || echo unknown).
EOM
echo "results in $dir"
