"""The gateway's kernelspecs (``python3/kernel.json``) and IPython startup scripts (``startup/``).

This directory ships inside the package as ``gateway.kernels`` (see ``package-dir`` in
pyproject.toml), so an installed gateway finds it with ``importlib.resources`` instead of
relying on a checkout; ``gateway.kernelspec`` is the one place that reads it.
"""
