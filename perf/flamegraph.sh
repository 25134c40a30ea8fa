#!/usr/bin/env bash
# CPU flamegraph of a running process or of a command, from timing samples (perf record -F 999
# -g; hardware counters do not work on this VM) folded by inferno.
#
#   perf/flamegraph.sh -p PID [-d SECONDS] [-o OUT.svg]
#   perf/flamegraph.sh [-o OUT.svg] -- COMMAND [ARGS...]
#
# Needs `perf` (apt-get install linux-perf) and inferno (`cargo install inferno`, done here if
# absent). Build the target in release: the workspace keeps line tables in release for symbols.
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

pid="" duration=10 out="" freq=999
while [[ $# -gt 0 ]]; do
    case "$1" in
        -p) pid="$2"; shift 2 ;;
        -d) duration="$2"; shift 2 ;;
        -o) out="$2"; shift 2 ;;
        -F) freq="$2"; shift 2 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
done
[[ -n "$pid" || $# -gt 0 ]] || usage

command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno (cargo install inferno)..." >&2
    cargo install inferno
fi

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${out:-flamegraph-$stamp.svg}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "$pid" ]]; then
    perf record -F "$freq" -g -p "$pid" -o "$work/perf.data" -- sleep "$duration"
else
    perf record -F "$freq" -g -o "$work/perf.data" -- "$@"
fi
perf script -i "$work/perf.data" > "$work/perf.script"
inferno-collapse-perf < "$work/perf.script" > "$work/folded"
if [[ -n "$pid" ]]; then what="pid $pid"; else what="$*"; fi
title="$what — $(hostname) — $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo nogit) — $stamp"
inferno-flamegraph --title "$title" < "$work/folded" > "$out"
echo "$out"
