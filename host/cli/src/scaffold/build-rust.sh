#!/usr/bin/env bash
# Build plugin `{{name}}` into {{name}}.wasm, with its manifest beside it as
# {{name}}.toml (what `cascade plugin add {{name}}.wasm` reads).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml"
target=${CARGO_TARGET_DIR:-$here/target}
cp "$target/wasm32-wasip2/release/{{crate_file}}.wasm" "$here/{{name}}.wasm"
cp "$here/cascade.toml" "$here/{{name}}.toml"
echo "built $here/{{name}}.wasm"
