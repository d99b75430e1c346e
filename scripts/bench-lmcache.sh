#!/usr/bin/env bash
# The LMCache plugin beside every connector LMCache ships (benches/lmcache/): builds the package (release) into
# the cached PyTorch + LMCache environment scripts/test-lmcache.sh makes, starts its own servers, and prints the
# table BENCHMARKS.md keeps.
#   scripts/bench-lmcache.sh              # full run
#   scripts/bench-lmcache.sh --quick      # fewer rounds
#   scripts/bench-lmcache.sh --write      # also put the tables into BENCHMARKS.md
# Other arguments go to benches/lmcache/run.py (--rows, --servers, --no-cluster). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
python=${PYTHON:-python3}
key=$(sha256sum python/requirements-lmcache.txt | cut -c1-12)
env_dir=${KVCACHE_LMCACHE_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-redis/lmcache-$key}
if [ ! -x "$env_dir/bin/python" ] || ! "$env_dir/bin/python" -c "import lmcache, torch, maturin" 2>/dev/null; then
  echo "creating the LMCache environment in $env_dir (PyTorch and LMCache: a few minutes, about 6 GB)..." >&2
  rm -rf "$env_dir"
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  "$env_dir/bin/python" -m pip install --quiet -r python/requirements-lmcache.txt
fi
export VIRTUAL_ENV="$env_dir"
export PATH="$env_dir/bin:$PATH"
(cd python && maturin develop --quiet --release) >&2
cargo build --quiet --release --example local_deployment
python benches/lmcache/run.py "$@"
