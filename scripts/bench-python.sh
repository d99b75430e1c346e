#!/usr/bin/env bash
# The Python package against redis-py and valkey-glide sync, and against the Rust crate itself (benches/python/):
# builds the package (release) into a cached virtual environment of its own, starts its own servers, and prints
# the table BENCHMARKS.md keeps.
#   scripts/bench-python.sh              # full run (about 15 minutes here)
#   scripts/bench-python.sh --quick      # fewer rounds
#   scripts/bench-python.sh --write      # also put the tables into BENCHMARKS.md
# Other arguments go to benches/python/run.py (--rows, --servers). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh
python=${PYTHON:-python3}
key=$(sha256sum benches/python/requirements.txt | cut -c1-12)
env_dir=${KVCACHE_PY_BENCH_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-redis/py-bench-$key}
if [ ! -x "$env_dir/bin/python" ] || ! "$env_dir/bin/python" -c "import maturin, glide_sync" 2>/dev/null; then
  echo "creating the Python benchmark environment in $env_dir..." >&2
  rm -rf "$env_dir"
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  "$env_dir/bin/python" -m pip install --quiet -r benches/python/requirements.txt
fi
export VIRTUAL_ENV="$env_dir"
export PATH="$env_dir/bin:$PATH"
(cd python && maturin develop --quiet --release) >&2
cargo build --quiet --release --example local_deployment --example python_rows
python benches/python/run.py "$@"
