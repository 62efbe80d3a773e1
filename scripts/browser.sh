#!/usr/bin/env bash
# The headless browser of the panel's end-to-end tests (tests/test_panel_browser.py): Debian's
# chromium, driven by Playwright for Python with executable_path (Playwright's own browser
# download is not needed). Idempotent: installs the package only when `chromium` is missing.
# Prints the path of the browser. Needs root or sudo for apt-get the first time.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the panel's browser tests..." >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "scripts/browser.sh: chromium is missing and this user cannot apt-get install it;" \
           "run as root: apt-get install -y chromium" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    chromium >&2
fi
command -v chromium
