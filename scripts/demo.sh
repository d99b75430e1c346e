#!/usr/bin/env bash
# The main job: stores and loads a batch of MiB-sized KV chunks, checks them and prints how fast it went.
#   scripts/demo.sh                       # starts a throwaway local Redis, runs, stops it
#   scripts/demo.sh --valkey              # the same with a throwaway Valkey
#   scripts/demo.sh redis://host:6379     # against your deployment (keys are namespaced and removed after)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
exec cargo run --quiet --release --example demo -- "$@"
