#!/usr/bin/env bash
# The Python package's checks: builds it into a virtual environment of its own (cached outside the repository,
# keyed by python/requirements-dev.txt; never the system Python), lints and type-checks it (ruff, mypy --strict,
# stubtest against the built module), and runs pytest against real servers (started through the crate's own
# fixtures, examples/local_deployment). scripts/test.sh runs this after the Rust tests. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-servers.sh

python=${PYTHON:-python3}
key=$(cat python/requirements-dev.txt | sha256sum | cut -c1-12)
env_dir=${KVCACHE_PY_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-redis/py-dev-$key}
if [ ! -x "$env_dir/bin/python" ] || ! "$env_dir/bin/python" -c "import pytest, maturin" 2>/dev/null; then
  echo "creating the Python test environment in $env_dir..." >&2
  rm -rf "$env_dir"
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  "$env_dir/bin/python" -m pip install --quiet -r python/requirements-dev.txt
fi
export VIRTUAL_ENV="$env_dir"
export PATH="$env_dir/bin:$PATH"

# The package (debug build: the tests check behaviour, not speed; benches/python builds with --release), and the
# examples the tests drive.
(cd python && maturin develop --quiet --profile dev)
cargo build --quiet --example local_deployment --example chunk_roundtrip
export KVCACHE_EXAMPLES_DIR="$root/target/debug/examples"

cd python
ruff check .
ruff format --check .
mypy --strict kvcache_redis tests
python -m mypy.stubtest kvcache_redis --mypy-config-file pyproject.toml --allowlist stubtest-allowlist.txt
python -m pytest -q "$@"
