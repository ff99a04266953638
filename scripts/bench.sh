#!/usr/bin/env bash
# Build the plugins and run the benchmarks; figures are written up in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-plugins.sh
cargo bench -p cascade --bench pipeline -- "$@"
