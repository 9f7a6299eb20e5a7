"""What every benchmark shares: the services it measures against, percentiles, and the results file.

A benchmark is a module ``bench/bench_<name>.py`` with ``TITLE`` and ``def main() -> str`` that starts
what it needs (on free ports), measures, stops it all and returns its table(s) as Markdown.
``python -m bench [name ...]`` runs them, prints each table, and appends it to ``bench/RESULTS.md``
with the machine's core count, the versions and the date.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from engine.local import processes as stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class Stack:
    """Services a benchmark talks to."""

    temporal_address: str
    opa_url: str
    scripted_url: str
    logs: Path
    pids: dict[str, int]  # temporal, opa, scripted: for CPU accounting


@contextmanager
def services(logs: Path, *, temporal_file: bool = True, opa: bool = True,
             scripted: bool = True) -> Iterator[Stack]:
    """A Temporal dev server (SQLite file, or in memory), OPA serving policies/, the scripted model."""
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stop:
        t_port, ui_port, opa_port, llm_port = (stack.free_port() for _ in range(4))
        db_file = logs / "temporal.db" if temporal_file else None
        temporal = stack.launch_temporal(t_port, ui_port, db_file, logs / "temporal.log", tethered=True)
        stop.callback(stack.stop_process, temporal)
        pids = {"temporal": temporal.pid}
        if opa:
            proc = stack.launch_opa(opa_port, ROOT / "policies", logs / "opa.log", ROOT, tethered=True)
            stop.callback(stack.stop_process, proc)
            pids["opa"] = proc.pid
        if scripted:
            proc = stack.launch_scripted(llm_port, logs / "scripted.log", tethered=True)
            stop.callback(stack.stop_process, proc)
            pids["scripted"] = proc.pid
        yield Stack(f"127.0.0.1:{t_port}", f"http://127.0.0.1:{opa_port}", f"http://127.0.0.1:{llm_port}/v1", logs,
                    pids)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process used so far (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    def cell(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """Cores, Python, the versions that matter, and the date."""
    opa = shutil.which("opa") or str(ROOT / ".tools" / "bin" / "opa")
    try:
        opa_version = subprocess.run([opa, "version"], capture_output=True, text=True, timeout=10).stdout.split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        opa_version = "?"
    packages = ", ".join(f"{name} {version(name)}" for name in ("temporalio", "langgraph", "openai", "sqlmodel"))
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · Python {platform.python_version()}"
            f" · {packages} · OPA {opa_version}")


def record(title: str, body: str) -> str:
    """The section for ``bench/RESULTS.md``: title, machine line, tables."""
    return f"## {title}\n\n{machine()}\n\n{body.strip()}\n"


def append_results(section: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `./dev bench` (`python -m bench`), newest last. "
                           "Every figure is a ratio or a percentile measured side by side in one run.\n\n")
    with RESULTS.open("a") as out:
        out.write("\n" + section)
