"""Benchmarks (`make bench`): each prints one JSON line comparing against a baseline measured in the same run."""
