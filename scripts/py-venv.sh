#!/usr/bin/env bash
# Creates (once) the Python virtualenv the client-library tests use, with pinned packages from
# PyPI, and prints its python path. Idempotent and safe to run concurrently (a lock serializes).
# Location: $HEARTH_PY_VENV, default <repo>/.venv (git-ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HEARTH_PY_VENV:-$ROOT/.venv}"
REQS="$ROOT/scripts/py-requirements.txt"
exec 9>"$VENV.lock"
flock 9
stamp="$VENV/.hearth-reqs"
if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$REQS" "$stamp"; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQS" >&2
    cp "$REQS" "$stamp"
fi
echo "$VENV/bin/python"
