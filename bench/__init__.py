"""Benchmarks: ratios measured side by side in one run (``./dev bench``; results in bench/RESULTS.md)."""
