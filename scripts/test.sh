#!/usr/bin/env bash
# Run the whole test suite (lint, then pytest) in the project's venv, creating it if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# The original LiveTune `tune` command for tests/test_compat_tune.py (needs PyPI once; if it
# cannot be installed those tests fail and say why, the others still run).
scripts/original-livetune.sh >/dev/null || echo "warning: scripts/original-livetune.sh failed" >&2
# Debian's chromium for tests/test_panel_browser.py (apt-get once; if it cannot be installed
# those tests fail and say why, the others still run).
scripts/browser.sh >/dev/null || echo "warning: scripts/browser.sh failed" >&2
VENV="${LIVETUNE_VENV:-.venv}"
"$VENV/bin/ruff" check .
# Discovery records and default journals of test runs stay out of the user's own directory.
export LIVETUNE_HOME="${LIVETUNE_HOME:-$(mktemp -d)}"
# One worker per core (pytest-xdist), each taking whole files, so a module's fixtures stay in
# one process; LIVETUNE_TEST_WORKERS=0 runs everything in this process.
exec "$VENV/bin/python" -m pytest -q -n "${LIVETUNE_TEST_WORKERS:-auto}" --dist loadfile "$@"
