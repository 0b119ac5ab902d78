"""Performance runs; not part of `make test`. See docs/benchmarks.md."""
