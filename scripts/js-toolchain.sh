#!/usr/bin/env bash
# Install the pinned JavaScript guest toolchain (componentize-js, see
# guest-sdk/js/package.json and its lock file) into target/js-toolchain, once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
toolchain="$root/target/js-toolchain"
sdk="$root/guest-sdk/js"
if [[ -d "$toolchain/node_modules/@bytecodealliance/componentize-js" ]] \
    && cmp -s "$sdk/package-lock.json" "$toolchain/package-lock.json"; then
    exit 0
fi
mkdir -p "$toolchain"
cp "$sdk/package.json" "$sdk/package-lock.json" "$toolchain/"
(cd "$toolchain" && npm ci --no-audit --no-fund --loglevel=error)
