#!/usr/bin/env bash
# The main job: PPO learns Hungry-Thirsty with the registry embedded and every knob live.
# Sets up .venv on first use. Extra arguments go to `livetune train` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
VENV="${LIVETUNE_VENV:-.venv}"
exec "$VENV/bin/livetune" train --timesteps 100000 --n-envs 4 --eval-every 20000 "$@"
