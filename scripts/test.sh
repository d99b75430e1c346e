#!/usr/bin/env bash
# The whole test suite, from nothing: installs the Redis and Valkey server binaries if missing, then runs every
# test, the Python package's included. Tests start their own servers on free loopback ports and stop them by PID, even when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
cargo test "$@"
# The `metrics` feature's own test (a recorder is global, so it has a test binary of its own), a short nemesis
# run (tests/chaos.rs), the Python package's lints, type checks and tests, then the LMCache plugin's tests (with
# real PyTorch and LMCache).
if [[ $# -eq 0 ]]; then
  cargo test --features metrics --test metrics
  # Two short nemesis runs with fixed seeds, one per topology and server (the long ones: scripts/chaos.sh
  # --minutes 20).
  scripts/chaos.sh --minutes 1 --seed 20261205 --topology cluster --server redis
  scripts/chaos.sh --minutes 1 --seed 20261206 --topology sentinel --server valkey
  scripts/test-python.sh
  scripts/test-lmcache.sh
fi
