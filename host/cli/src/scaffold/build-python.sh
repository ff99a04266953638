#!/usr/bin/env bash
# Build plugin `{{name}}` into {{name}}.wasm, with its manifest beside it as
# {{name}}.toml (what `cascade plugin add {{name}}.wasm` reads). The first
# build installs the pinned componentize-py into the Cascade checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
home=${CASCADE_HOME:-{{home}}}
"$home/scripts/python-toolchain.sh"
"$home/target/py-toolchain/bin/python" "$home/guest-sdk/python/cascade_build.py" \
    "$here/{{module}}.py" -o "$here/{{name}}.wasm" >/dev/null
cp "$here/cascade.toml" "$here/{{name}}.toml"
echo "built $here/{{name}}.wasm"
