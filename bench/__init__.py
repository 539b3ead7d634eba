"""Benchmarks of issue 11: the agent against a bare pipeline, side by side (docs/performance.md)."""
