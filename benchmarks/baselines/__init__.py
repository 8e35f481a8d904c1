"""Baseline designs the benchmarks compare hydralm against (not part of the product)."""
