#!/usr/bin/env bash
# The LMCache plugin's tests: real PyTorch and LMCache 0.5.6 from PyPI in a virtual environment of their own
# (cached outside the repository, keyed by python/requirements-lmcache.txt: about 6 GB and two to three minutes the
# first time), the package built into it, then python/tests/test_lmcache.py against real servers. scripts/test.sh
# runs this after the Python package's own checks. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-servers.sh

python=${PYTHON:-python3}
key=$(sha256sum python/requirements-lmcache.txt | cut -c1-12)
env_dir=${KVCACHE_LMCACHE_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-redis/lmcache-$key}
if [ ! -x "$env_dir/bin/python" ] || ! "$env_dir/bin/python" -c "import lmcache, torch, maturin, pytest" 2>/dev/null; then
  echo "creating the LMCache test environment in $env_dir (PyTorch and LMCache: a few minutes, about 6 GB)..." >&2
  rm -rf "$env_dir"
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  "$env_dir/bin/python" -m pip install --quiet -r python/requirements-lmcache.txt
fi
export VIRTUAL_ENV="$env_dir"
export PATH="$env_dir/bin:$PATH"
(cd python && maturin develop --quiet --profile dev) >&2
cargo build --quiet --example local_deployment --example chunk_roundtrip
export KVCACHE_EXAMPLES_DIR="$root/target/debug/examples"
cd python
python -m pytest -q tests/test_lmcache.py "$@"
