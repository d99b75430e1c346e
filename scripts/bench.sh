#!/usr/bin/env bash
# The comparison runner: starts its own Redis and Valkey servers (standalone and Clusters), runs every workload
# with kvcache-redis and with the baselines alternately, and prints one table.
#   scripts/bench.sh            # full run (about 5 minutes here)
#   scripts/bench.sh --quick    # fewer rounds
#   scripts/bench.sh --write    # also rewrite BENCHMARKS.md's results and the plot
# Extra arguments name one workload group: small, large, put, threads, peek, memory, sweep, growth, cluster, replicas.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
cargo bench --quiet --bench compare -- "$@"
if [[ " $* " == *" --write "* ]]; then
  if ! python3 -c "import matplotlib" 2>/dev/null; then
    python3 -m pip install --quiet matplotlib
  fi
  python3 benches/plot.py benches/results/sizes.csv benches/results/throughput_vs_size.png
fi
