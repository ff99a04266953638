#!/usr/bin/env bash
# Build plugin `{{name}}` into {{name}}.wasm, with its manifest beside it as
# {{name}}.toml (what `cascade plugin add {{name}}.wasm` reads). The first
# build installs the pinned componentize-js into the Cascade checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
home=${CASCADE_HOME:-{{home}}}
"$home/scripts/js-toolchain.sh"
node "$home/guest-sdk/js/build.mjs" "$here/{{module}}.js" -o "$here/{{name}}.wasm" >/dev/null
cp "$here/cascade.toml" "$here/{{name}}.toml"
echo "built $here/{{name}}.wasm"
