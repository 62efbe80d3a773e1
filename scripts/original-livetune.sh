#!/usr/bin/env bash
# Install the original LiveTune package (its `tune` command) into a throwaway venv under
# build/original-livetune/, for the compatibility tests (tests/test_compat_tune.py).
# Idempotent: a second run with the same pinned version does nothing. Prints the path of `tune`.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="0.0.8"
PY="${PYTHON:-python3}"
DIR="build/original-livetune"
STAMP="$DIR/.installed"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$VERSION" ]; then
  echo "installing livetune==$VERSION (the original, for the compatibility tests) in $DIR..." >&2
  rm -rf "$DIR"
  "$PY" -m venv "$DIR/venv"
  "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check "livetune==$VERSION" >&2
  echo "$VERSION" > "$STAMP"
fi
echo "$PWD/$DIR/venv/bin/tune"
