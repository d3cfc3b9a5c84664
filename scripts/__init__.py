"""Benchmarks, demos and developer tools, run from the repository root as modules:
``.venv/bin/python -m scripts.bench``; shared code is in ``scripts/benchlib/``."""
