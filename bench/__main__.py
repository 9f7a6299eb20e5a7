"""``python -m bench [name ...]``: run the benchmarks (all by default), print and append their tables."""

from __future__ import annotations

import importlib
import sys

from bench.common import ROOT, append_results, record


def names() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))


def main(argv: list[str]) -> int:
    chosen = argv or names()
    unknown = [n for n in chosen if n not in names()]
    if unknown:
        print(f"no benchmark {', '.join(unknown)}; there are: {', '.join(names())}", file=sys.stderr)
        return 2
    for name in chosen:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"==> {module.TITLE}", flush=True)
        section = record(module.TITLE, module.main())
        print(section, flush=True)
        append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
