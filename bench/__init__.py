"""Benchmarks that print ratios and figures (not timed tests); run from the project root: `python -m bench.perf`."""
