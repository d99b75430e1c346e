"""Plots throughput against value size from benches/results/sizes.csv (written by the comparison runner)."""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "benches/results/sizes.csv"
dst = sys.argv[2] if len(sys.argv) > 2 else "benches/results/throughput_vs_size.png"

series = defaultdict(list)
with open(src) as f:
    for row in csv.DictReader(f):
        series[(row["server"], row["series"])].append((int(row["value_bytes"]), float(row["gib_per_s"])))

servers = sorted({s for s, _ in series})
fig, axes = plt.subplots(1, len(servers), figsize=(6 * len(servers), 4.2), sharey=True)
if len(servers) == 1:
    axes = [axes]
styles = {"kvcache-redis": "o-", "one MGET": "s--", "per-key GET loop": "^:"}
for ax, server in zip(axes, servers):
    for (srv, name), points in sorted(series.items()):
        if srv != server:
            continue
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], styles.get(name, "x-"), label=name)
    ax.set_xscale("log", base=2)
    ax.set_title(f"batched_get on {server}")
    ax.set_xlabel("value size (bytes)")
    ax.grid(True, alpha=0.3)
axes[0].set_ylabel("GiB/s (median)")
axes[0].legend()
fig.tight_layout()
fig.savefig(dst, dpi=110)
print(f"wrote {dst}")
