"""Timing and memory benchmarks; each prints a table. Run from the repository root: python -m benchmarks.NAME."""
