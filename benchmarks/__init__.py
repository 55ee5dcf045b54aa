"""The benchmarks of the README and docs, run from the repository root as modules: python -m benchmarks.quality."""
