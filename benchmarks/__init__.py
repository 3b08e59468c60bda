"""Benchmarks of autoresearch: `python -m benchmarks` prints the whole table (see docs/PERFORMANCE.md)."""
