#!/usr/bin/env bash
# The whole test suite, from nothing: installs the Redis and Valkey server binaries if missing, then runs every
# test. Tests start their own servers on free loopback ports and stop them by PID, even when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
exec cargo test "$@"
