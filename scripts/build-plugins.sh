#!/usr/bin/env bash
# Build every example plugin in plugins/ to a wasm32-wasip2 component and copy
# it to target/plugins/<name>.wasm: the Rust ones, then (unless called with
# `rust`) the Python and JavaScript ones, which take seconds each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --target wasm32-wasip2 \
    --manifest-path "$root/plugins/Cargo.toml" --target-dir "$root/target/guest"
mkdir -p "$root/target/plugins"
for wasm in "$root"/target/guest/wasm32-wasip2/release/*.wasm; do
    name=$(basename "$wasm" .wasm)
    name=${name//_/-}
    cp "$wasm" "$root/target/plugins/$name.wasm"
    # The manifest (grants, limits) travels beside the component.
    if [[ -f "$root/plugins/$name/cascade.toml" ]]; then
        cp "$root/plugins/$name/cascade.toml" "$root/target/plugins/$name.toml"
    fi
done
[[ "${1:-all}" == rust ]] && exit 0
# Python guests: every plugins/*-py folder holds one module.
"$root/scripts/python-toolchain.sh"
for dir in "$root"/plugins/*-py; do
    module=$(ls "$dir"/*.py | head -1)
    "$root/target/py-toolchain/bin/python" "$root/guest-sdk/python/cascade_build.py" "$module" \
        -o "$root/target/plugins/$(basename "$dir").wasm" >/dev/null
done
# JavaScript guests: every plugins/*-js folder holds one module.
"$root/scripts/js-toolchain.sh"
for dir in "$root"/plugins/*-js; do
    module=$(ls "$dir"/*.js | head -1)
    node "$root/guest-sdk/js/build.mjs" "$module" -o "$root/target/plugins/$(basename "$dir").wasm" >/dev/null
done
