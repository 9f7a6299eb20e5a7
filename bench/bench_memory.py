"""Worker memory over many runs: resident size after 300 and after 1,000 completed runs, Airlock and bare.

The same runs as bench_throughput (one allowed ``issue_refund``; the bare graph's three no-op nodes), in
batches of 50 on the in-memory dev server; RSS is read from /proc after each batch, once the batch's runs
have all completed. Target: Airlock's worker grows less than 5 MiB from 300 to 1,000 runs (each point the
mean of three readings: 250, 300, 350 and 900, 950, 1,000).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench import bench_throughput as runs
from bench.common import services, table

TITLE = "Worker memory from 300 to 1,000 completed runs"
TOTAL = int(os.environ.get("BENCH_MEMORY_RUNS", "1000"))
MARK = int(os.environ.get("BENCH_MEMORY_MARK", "300"))
BATCH = 50


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp, \
            services(Path(tmp) / "services", temporal_file=False) as stack:
        curves = asyncio.run(runs.memory_curves(stack, Path(tmp), total=TOTAL, batch=BATCH))
    rows = []
    for name, curve in curves.items():
        # One reading moves by a few MiB with what the last batch left for the collector: each point is the
        # mean of the three readings around it (the batches before, at and after the mark; the last three).
        at_mark = _mean([rss for done, rss in curve if abs(done - MARK) <= BATCH])
        last = _mean([rss for _, rss in curve[-3:]])
        growth = last - at_mark
        rows.append([name, f"{curve[0][1]:.1f}", f"{at_mark:.1f}", f"{last:.1f}", f"{growth:+.1f}",
                     "< 5 MiB" if name == "Airlock" else "", ("yes" if growth < 5 else "no") if name == "Airlock"
                     else ""])
    samples = "\n".join(f"- {name}: " + ", ".join(f"{done}: {rss:.0f}" for done, rss in curve)
                        for name, curve in curves.items())
    return (table(["worker", f"RSS MiB after {BATCH} runs", f"around {MARK}", f"at {TOTAL}",
                   f"growth {MARK}→{TOTAL} MiB", "target", "met"], rows)
            + f"\n\nRSS (MiB) after each batch of {BATCH}:\n\n{samples}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    print(main())
