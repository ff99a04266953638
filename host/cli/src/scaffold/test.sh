#!/usr/bin/env bash
# Build `{{name}}`, run it in a throwaway data directory and check what it
# did. Exits non-zero, saying what was missing, when it does not work.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
home=${CASCADE_HOME:-{{home}}}
cascade=${CASCADE:-{{cascade}}}
"$here/build.sh" >/dev/null
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
check() {
    if ! grep -qF -- "$2" <<<"$1"; then
        printf 'FAIL: expected `%s` in:\n%s\n' "$2" "$1"
        exit 1
    fi
}
{{steps}}
echo "ok: {{name}} works"
