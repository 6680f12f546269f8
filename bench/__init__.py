"""Benchmarks of mtai measured on the machine at hand: `make bench` (see docs/benchmarks.md)."""
