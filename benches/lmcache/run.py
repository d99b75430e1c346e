"""The LMCache plugin beside every connector LMCache ships, through LMCache's remote-connector interface: the same
servers and chunks, each client in a process of its own, clients alternated round by round, medians, every tensor
checked. Prints a markdown table; with --write, puts it into
BENCHMARKS.md.

    scripts/bench-lmcache.sh [--quick] [--write] [--rows get8,...] [--servers redis,valkey]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

ROWS = {
    "get8": "batched_get 8 x 32 MiB",
    "put8": "batched_put 8 x 32 MiB",
    "get32": "batched_get 32 x 32 MiB",
    "put32": "batched_put 32 x 32 MiB",
    "get1000": "batched_get 1000 x 16 KiB",
    "contains1000": "batched_async_contains 1000 keys",
}
#: Timed runs per process (after one warm-up).
REPS = {"get8": 3, "put8": 3, "get32": 2, "put32": 2, "get1000": 5, "contains1000": 10}
OURS = ["kvcache", "kvcache-raw"]
LMCACHE = ["redis", "valkey", "resp"]
# The server's own ceilings (raw sockets, one and several) are the Rust comparison runner's rows (BENCHMARKS.md):
# a plain socket driven from Python is slower than this client, so it would be no ceiling.


def start(kind: str, topology: str) -> tuple[subprocess.Popen[bytes], str]:
    launcher = ROOT / "target" / "release" / "examples" / "local_deployment"
    p = subprocess.Popen([str(launcher), f"--{kind}", topology], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    info = json.loads(p.stdout.readline())
    url = info["url"]
    if topology == "cluster":
        url = "redis://" + ",".join(n["addr"] for n in info["nodes"] if n["role"] == "primary")
    return p, url


def once(client: str, row: str, url: str, reps: int) -> dict[str, Any]:
    if client == "redis-cluster":
        target = url.replace("redis://", "redis-cluster://")
    elif client in ("kvcache", "kvcache-raw") and "," in url:
        target = url.split(",")[0]  # one seed is enough for this client
    else:
        target = url
    cmd = [sys.executable, str(HERE / "connectors.py"), client, row, target, str(reps)]
    out = subprocess.run(cmd, capture_output=True, timeout=1200)
    try:
        result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": f"no result (exit {out.returncode}): {out.stderr.decode()[-300:]}"}
    return result


def measure(url: str, clients: list[str], rows: list[str], rounds: int, quick: bool) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {r: {c: {"secs": [], "cpu": []} for c in clients} for r in rows}
    for row in rows:
        for rnd in range(rounds):
            order = clients[rnd % len(clients) :] + clients[: rnd % len(clients)]
            for client in order:
                reps = max(1, REPS[row] // 2) if quick else REPS[row]
                r = once(client, row, url, reps)
                agg = results[row][client]
                if "error" in r:
                    agg["error"] = r["error"]
                    print(f"    {client} {row}: {r['error']}", file=sys.stderr)
                    continue
                agg["secs"] += r["secs"]
                agg["cpu"] += r["cpu"]
                agg["bytes"], agg["ops"] = r["bytes"], r["ops"]
                agg["checked"] = agg.get("checked", 0) + r["checked"]
            print(f"  {row}: round {rnd + 1}/{rounds} done", file=sys.stderr)
    return results


def rate(agg: dict[str, Any]) -> float | None:
    if agg.get("error") or not agg.get("secs"):
        return None
    return float(agg["bytes"]) / statistics.median(agg["secs"])


def shown(row: str, agg: dict[str, Any]) -> str:
    r = rate(agg)
    if r is None:
        return "error" if agg.get("error") else "-"
    if row.startswith("contains"):
        return f"{agg['ops'] / statistics.median(agg['secs']) / 1000:.0f}k keys/s"
    if row == "get1000":
        return f"{agg['ops'] / statistics.median(agg['secs']) / 1000:.0f}k chunks/s"
    return f"{r / (1 << 30):.2f} GiB/s"


def cpu_ms_per_gib(agg: dict[str, Any]) -> str:
    if agg.get("error") or not agg.get("cpu"):
        return "-"
    return f"{statistics.median(agg['cpu']) / (agg['bytes'] / (1 << 30)) * 1000:.0f}"


def best(by: dict[str, Any], names: list[str]) -> tuple[str, dict[str, Any]]:
    have = [(n, by[n]) for n in names if n in by and rate(by[n]) is not None]
    if not have:
        return "-", {}
    return max(have, key=lambda a: rate(a[1]) or 0.0)


def table(all_results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| server | workload | plugin (framed) | plugin (raw) | fastest LMCache connector | plugin / it | "
        "CPU ms per GiB: plugin / that connector | values checked |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server, results in all_results.items():
        for row, by in results.items():
            ours = by.get("kvcache", {})
            lm_name, lm = best(by, LMCACHE + ["redis-cluster"])
            ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
            checked = sum(int(x.get("checked", 0)) for x in by.values())
            raw = shown(row, by["kvcache-raw"]) if "kvcache-raw" in by else "-"
            lines.append(
                f"| {server} | {ROWS[row]} | {shown(row, ours)} | {raw} | {lm_name}: {shown(row, lm)} | "
                f"{ratio(rate(ours), rate(lm))} | {cpu_ms_per_gib(ours)} / {cpu_ms_per_gib(lm)} | {checked} |"
            )
    return "\n".join(lines)


def details(all_results: dict[str, dict[str, dict[str, Any]]]) -> str:
    names = [*OURS, *LMCACHE, "redis-cluster"]
    lines = ["| server | workload | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for server, results in all_results.items():
        for row, by in results.items():
            cells = [shown(row, by[n]) if n in by else "" for n in names]
            lines.append(f"| {server} | {ROWS[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_benchmarks(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    begin, end = "<!-- lmcache:begin -->", "<!-- lmcache:end -->"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end) :]
    else:
        doc += f"\n{begin}\n{text}\n{end}\n"
    path.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 rounds instead of 3, half the runs")
    ap.add_argument("--write", action="store_true", help="put the tables into BENCHMARKS.md")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--servers", default="redis,valkey")
    ap.add_argument("--no-cluster", action="store_true", help="skip the Cluster rows")
    args = ap.parse_args()
    rounds = 2 if args.quick else 3
    rows = args.rows.split(",")
    all_results: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in args.servers.split(","):
        name = "Redis 7" if kind == "redis" else "Valkey 9"
        process, url = start(kind, "standalone")
        try:
            print(f"{kind}: {url}", file=sys.stderr)
            all_results[name] = measure(url, OURS + LMCACHE, rows, rounds, args.quick)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=60)
        if args.no_cluster:
            continue
        process, url = start(kind, "cluster")
        try:
            print(f"{kind} cluster: {url}", file=sys.stderr)
            cluster_rows = [r for r in rows if r in ("get8", "put8", "get1000", "contains1000")]
            all_results[f"{name} Cluster (3)"] = measure(url, ["kvcache", "redis-cluster"], cluster_rows, rounds, args.quick)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=60)
    import lmcache
    import torch

    text = (
        f"Measured by `scripts/bench-lmcache.sh{' --quick' if args.quick else ''}` on {os.cpu_count()} cores "
        f"(Python {platform.python_version()}, LMCache {getattr(lmcache, '__version__', '0.5.6')}, PyTorch "
        f"{torch.__version__}); medians over {rounds} rounds ({REPS} runs per round and process, halved with "
        f"--quick), each client in a process of its own, alternated every round. CPU is the client process's.\n\n"
        f"{table(all_results)}\n\nEvery client, medians:\n\n{details(all_results)}\n"
    )
    print(text)
    if args.write:
        write_benchmarks(text)


if __name__ == "__main__":
    main()
