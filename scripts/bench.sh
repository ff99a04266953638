#!/usr/bin/env bash
# Build the plugins and test fixtures (some benchmarks use fixtures), then run
# every benchmark; figures are written up in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
./scripts/python-toolchain.sh
./scripts/js-toolchain.sh
./scripts/build-plugins.sh
cargo test --release -p cascade-tests --no-run
cargo build --release -p cascade-cli
for bench in pipeline single handle reader refresh instances effects read_models sandbox integrity server guests; do
    cargo bench -p cascade --bench "$bench"
done
python3 scripts/bench-cli.py
