#!/usr/bin/env bash
# A nemesis run: a real 3+3 Cluster or a Sentinel set (a primary, two replicas, three Sentinels) under a checked load
# on every operation, with a seeded schedule of faults, then a checker over the whole run (tests/chaos.rs).
#
#   scripts/chaos.sh [--minutes N] [--seed S] [--topology cluster|sentinel] [--server redis|valkey]
#
# Defaults: 20 minutes, a seed from the clock (printed first; the same seed gives the same schedule), and the
# topology and server chosen by the seed. Partitions need root (network namespaces); without it they are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=20 seed="" topology="" server=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --topology) topology="$2"; shift 2 ;;
    --server) server="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
seed="${seed:-$(date +%s)}"
case "$topology" in ""|cluster|sentinel) ;; *) echo "--topology is cluster or sentinel" >&2; exit 2 ;; esac
case "$server" in ""|redis|valkey) ;; *) echo "--server is redis or valkey" >&2; exit 2 ;; esac
echo "seed $seed"
scripts/install-servers.sh
KVCACHE_CHAOS_MINUTES="$minutes" KVCACHE_CHAOS_SEED="$seed" KVCACHE_CHAOS_TOPOLOGY="$topology" \
  KVCACHE_CHAOS_SERVER="$server" cargo test --test chaos -- --ignored --nocapture nemesis
