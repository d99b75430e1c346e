"""The Python package beside the Python clients an inference stack would use instead, and beside the Rust crate
itself: the same workloads on the same servers, one process per client and run, clients alternated round by
round, medians, every value checked. Prints a markdown table; with --write, puts it into BENCHMARKS.md.

    scripts/bench-python.sh [--quick] [--write] [--rows read8x32,...] [--servers redis,valkey]

Rows: 8 x 32 MiB reads into preallocated buffers, 8 x 32 MiB writes, one call of 1000 x 4 KiB, 16 Python
threads of single 4 KiB gets. Alternatives: redis-py (a pipeline of GETs / SETs, and MGET / MSET) and
valkey-glide sync (MGET / MSET with buffers, and LMCache's way: 8 threads, a client each, one key per call, GETs
into buffers). Each row's "best alternative" is the fastest of those configurations in that run.
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
sys.path.insert(0, str(HERE))

from clients import BIG, SMALL, value  # noqa: E402

ROWS = {
    "read8x32": "8 x 32 MiB reads into buffers",
    "write8x32": "8 x 32 MiB writes",
    "read1000x4k": "one call of 1000 x 4 KiB (bytes)",
    "read1000x4k_into": "one call of 1000 x 4 KiB into buffers",
    "threads16x4k": "16 threads of single 4 KiB gets",
}
ALTERNATIVES = ["redis-py", "redis-py-mget", "glide", "glide-x8"]
# MGET of 32 MiB values makes the server build a 256 MiB reply: redis-py's pipeline is its better form there, and
# an MSET of them is one 256 MiB command; both are run anyway so the table shows it.


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    launcher = ROOT / "target" / "release" / "examples" / "local_deployment"
    p = subprocess.Popen([str(launcher), f"--{kind}", "standalone"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    info = json.loads(p.stdout.readline())
    return p, info["url"]


def seed(url: str) -> None:
    import kvcache_redis

    with kvcache_redis.Client(url) as c:
        c.batched_put([f"pybench:big:{i}" for i in range(8)], [value(i, BIG) for i in range(8)])
        c.batched_put([f"pybench:small:{i}" for i in range(1000)], [value(i, SMALL) for i in range(1000)])


def once(client: str, row: str, url: str, reps: int) -> dict[str, Any]:
    if client == "rust":
        cmd = [str(ROOT / "target" / "release" / "examples" / "python_rows"), row, url, str(reps)]
    else:
        cmd = [sys.executable, str(HERE / "clients.py"), client, row, url, str(reps)]
    out = subprocess.run(cmd, capture_output=True, timeout=600)
    try:
        result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": f"no result (exit {out.returncode}): {out.stderr.decode()[-300:]}"}
    return result


#: Timed runs per process and row (after one warm-up run): many for the row that takes milliseconds.
REPS = {"read8x32": 3, "write8x32": 3, "read1000x4k": 40, "read1000x4k_into": 40, "threads16x4k": 3}


def measure(url: str, rows: list[str], rounds: int, quick: bool) -> dict[str, dict[str, dict[str, Any]]]:
    clients = ["kvcache", "rust", *ALTERNATIVES]
    results: dict[str, dict[str, dict[str, Any]]] = {r: {c: {"secs": [], "cpu": []} for c in clients} for r in rows}
    for row in rows:
        for rnd in range(rounds):
            order = clients[rnd % len(clients) :] + clients[: rnd % len(clients)]
            for client in order:
                r = once(client, row, url, max(1, REPS[row] // 2) if quick else REPS[row])
                agg = results[row][client]
                if "error" in r:
                    agg["error"] = r["error"]
                    continue
                agg["secs"] += r["secs"]
                agg["cpu"] += r["cpu"]
                agg["bytes"], agg["ops"] = r["bytes"], r["ops"]
                agg["checked"] = agg.get("checked", 0) + r["checked"]
            print(f"  {row}: round {rnd + 1}/{rounds} done", file=sys.stderr)
    return results


def rate(agg: dict[str, Any]) -> float | None:
    if agg.get("error") or not agg["secs"]:
        return None
    return float(agg["bytes"]) / statistics.median(agg["secs"])


def cpu_per_gib(agg: dict[str, Any]) -> float | None:
    if agg.get("error") or not agg["cpu"]:
        return None
    return statistics.median(agg["cpu"]) / (agg["bytes"] / (1 << 30)) * 1000.0


def fmt_rate(row: str, agg: dict[str, Any]) -> str:
    r = rate(agg)
    if r is None:
        return "error" if agg.get("error") else "-"
    if row in ("read1000x4k", "read1000x4k_into", "threads16x4k"):
        return f"{r / SMALL / 1000:.0f}k keys/s"
    return f"{r / (1 << 30):.2f} GiB/s"


def table(all_results: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> str:
    lines = [
        "| server | workload | kvcache_redis (Python) | Rust crate | Python / Rust | best alternative | ours / best "
        "| CPU ms per GiB: ours / Rust / best alternative | values checked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for server, results in all_results.items():
        for row, by_client in results.items():
            ours, rust = by_client["kvcache"], by_client["rust"]
            alts = [(c, by_client[c]) for c in ALTERNATIVES if rate(by_client[c]) is not None]
            best_name, best = max(alts, key=lambda a: rate(a[1]) or 0.0) if alts else ("-", {"secs": [], "cpu": []})
            r_ours, r_rust, r_best = rate(ours), rate(rust), rate(best)
            ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
            cpus = [cpu_per_gib(x) for x in (ours, rust, best)]
            cpu_text = " / ".join(f"{c:.0f}" if c is not None else "-" for c in cpus)
            checked = sum(int(x.get("checked", 0)) for x in by_client.values())
            lines.append(
                f"| {server} | {ROWS[row]} | {fmt_rate(row, ours)} | {fmt_rate(row, rust)} | {ratio(r_ours, r_rust)} "
                f"| {best_name}: {fmt_rate(row, best)} | {ratio(r_ours, r_best)} | {cpu_text} | {checked} |"
            )
    return "\n".join(lines)


def details(all_results: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> str:
    lines = ["| server | workload | " + " | ".join(["kvcache", "rust", *ALTERNATIVES]) + " |"]
    lines.append("|---|---|" + "---|" * (2 + len(ALTERNATIVES)))
    for server, results in all_results.items():
        for row, by_client in results.items():
            cells = [fmt_rate(row, by_client[c]) for c in ["kvcache", "rust", *ALTERNATIVES]]
            lines.append(f"| {server} | {ROWS[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_benchmarks(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    begin, end = "<!-- python:begin -->", "<!-- python:end -->"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end) :]
    else:
        doc += f"\n{begin}\n{text}\n{end}\n"
    path.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 rounds instead of 5, half the runs")
    ap.add_argument("--write", action="store_true", help="put the tables into BENCHMARKS.md")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--servers", default="redis,valkey")
    args = ap.parse_args()
    rounds = 2 if args.quick else 5
    rows = args.rows.split(",")
    all_results: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for kind in args.servers.split(","):
        process, url = start(kind)
        try:
            print(f"{kind}: {url}", file=sys.stderr)
            seed(url)
            all_results["Redis 7" if kind == "redis" else "Valkey 9"] = measure(url, rows, rounds, args.quick)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
    import glide_sync
    import redis

    versions = (
        f"Python {platform.python_version()}, redis-py {redis.__version__}, "
        f"valkey-glide-sync {getattr(glide_sync, '__version__', None) or _version('valkey-glide-sync')}"
    )
    summary = table(all_results)
    text = (
        f"Measured by `scripts/bench-python.sh{' --quick' if args.quick else ''}` on {os.cpu_count()} cores "
        f"({versions}); medians over {rounds} rounds of every client's runs ({REPS} per round and process, halved "
        f"with --quick), each client in a process of its own, clients alternated every round. CPU is the client "
        f"process's (all its threads).\n\n{summary}\n\nEvery configuration of the alternatives, medians:\n\n"
        f"{details(all_results)}\n"
    )
    print(text)
    if args.write:
        write_benchmarks(text)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
