#!/usr/bin/env bash
# Run every test: unit tests, and end-to-end tests that build the plugins and
# fixtures to wasm32-wasip2 (tests/build.rs) and drive the real host over a
# real redb file and a real PostgreSQL server. Release profile, so wasmtime is compiled once for the
# binary, the tests and the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
./scripts/python-toolchain.sh
./scripts/js-toolchain.sh
# The console's tests drive a real headless Chromium.
./scripts/browser.sh
# The PostgreSQL tests make and drop databases of their own on this server.
CASCADE_TEST_POSTGRES=$(./scripts/postgres.sh)
export CASCADE_TEST_POSTGRES
# The server tests start the real binary (target/release/cascade).
cargo build --release -p cascade-cli
cargo test --release --workspace
