"""Benchmarks for mailingest: ``python bench/run.py`` (see bench/README.md)."""
