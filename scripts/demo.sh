#!/usr/bin/env bash
# Set everything up on a fresh machine and run Cascade's main job on its
# embedded default (./cascade-data/cascade.redb): build the plugins and the
# host, register the example plugins, execute a command whose cascade runs
# through them, and print the events and the handler trace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-plugins.sh rust
cargo build --release -p cascade-cli
cascade=target/release/cascade
$cascade plugin add target/plugins/{users,accounts,welcome,notifications,audit}.wasm
user="user-$(date +%s%N)"
$cascade exec users "$user" create '{"name":"Torsten"}' --actor demo --trace
