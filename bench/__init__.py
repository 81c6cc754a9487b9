"""Benchmarks: each measures the tool against what a user would do otherwise, side by side in one run."""
