#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv (idempotent, ~1.5 min fresh).
# torch and torchvision are pinned here, in the same pip call as stable-baselines3, so pip
# takes the builds that lie on this machine's disk instead of downloading several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${LIVETUNE_VENV:-.venv}"
STAMP="$VENV/.livetune-installed"
WANT="$(cat pyproject.toml scripts/venv.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "setting up $VENV (first run takes a minute or two)..." >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q \
  "torch==2.14.1" "torchvision==0.29.1" \
  -e ".[rl,contrib,vision,ray,experiments,panel,test]" >&2
echo "$WANT" > "$STAMP"
