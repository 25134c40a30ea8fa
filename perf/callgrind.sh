#!/usr/bin/env bash
# Counts instructions of a command with valgrind's callgrind (repeatable, unlike timings on a
# shared VM) and prints the total plus the top functions.
#
#   perf/callgrind.sh [-o callgrind.out] [-n TOP] -- COMMAND [ARGS...]
#
# Needs valgrind (apt-get install valgrind). Keep the workload short: callgrind runs ~50x slower.
# Open the output in kcachegrind or with `callgrind_annotate FILE`.
set -euo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

out="" top=25
while [[ $# -gt 0 ]]; do
    case "$1" in
        -o) out="$2"; shift 2 ;;
        -n) top="$2"; shift 2 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || usage
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }

out="${out:-callgrind.out.$(date -u +%Y%m%dT%H%M%SZ)}"
valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
total="$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {print $1; exit}')"
echo "total instructions (Ir): ${total:-unknown}"
callgrind_annotate --threshold=99 "$out" | sed -n "1,$((top + 25))p"
echo "$out"
