#!/usr/bin/env bash
# The comparison runner: starts its own Redis and Valkey servers (standalone and Clusters), runs every workload
# with kvcache-redis and with the baselines alternately, and prints one table.
#   scripts/bench.sh            # full run (about 5 minutes here)
#   scripts/bench.sh --quick    # fewer rounds
#   scripts/bench.sh --write    # also rewrite BENCHMARKS.md's results and the plot
# Extra arguments name one workload group: small, large, put, threads, peek, memory, sweep, growth, cluster, replicas,
# alternatives (redis-rs multiplexed and fred, from benches/alternatives/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
# Words name workload groups; `alternatives` sends the other words to the alternatives runner instead (its groups:
# threads, batched, cluster), e.g. `scripts/bench.sh --quick alternatives threads`.
flags=() groups=() alternatives=""
for a in "$@"; do
  case $a in
    --*) flags+=("$a") ;;
    alternatives) alternatives=yes ;;
    *) groups+=("$a") ;;
  esac
done
if [[ -z $alternatives ]]; then
  cargo bench --quiet --bench compare -- "${flags[@]}" "${groups[@]}"
fi
# The async clients a service would pick instead (redis-rs multiplexed, fred): a crate of its own, so their
# dependencies stay out of the library's build and tests.
if [[ -n $alternatives || ${#groups[@]} -eq 0 ]]; then
  cargo build --quiet --release --manifest-path benches/alternatives/Cargo.toml
  KVCACHE_REDIS_SERVER="${KVCACHE_REDIS_SERVER:-$(command -v redis-server)}" \
  KVCACHE_VALKEY_SERVER="${KVCACHE_VALKEY_SERVER:-$PWD/.servers/bin/valkey-server}" \
    benches/alternatives/target/release/kvcache-redis-alternatives "${flags[@]}" "${groups[@]}"
fi
if [[ " $* " == *" --write "* ]]; then
  if ! python3 -c "import matplotlib" 2>/dev/null; then
    python3 -m pip install --quiet matplotlib
  fi
  python3 benches/plot.py benches/results/sizes.csv benches/results/throughput_vs_size.png
fi
