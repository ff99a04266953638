#!/usr/bin/env bash
# Chromium and ChromeDriver for the console's browser tests (tests/all/console.rs),
# from Debian's packages, when either is missing.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null || {
    echo "scripts/browser.sh: chromium or chromedriver is still missing after apt-get install" >&2
    exit 1
}
