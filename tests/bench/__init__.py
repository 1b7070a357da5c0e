"""Performance benchmark suite: `python -m tests.bench.run [--quick] [--json out.json]`.

See docs/benchmarks.md for what each figure means.
"""
