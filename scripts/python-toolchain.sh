#!/usr/bin/env bash
# Install the pinned Python guest toolchain (componentize-py, see
# guest-sdk/python/requirements.txt) into target/py-toolchain, once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/py-toolchain"
requirements="$root/guest-sdk/python/requirements.txt"
if [[ -x "$venv/bin/componentize-py" ]] && cmp -s "$requirements" "$venv/requirements.txt"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$venv/requirements.txt"
