"""Code-interpreter gateway: sandboxed, stateful IPython kernels per chat thread, streamed over a websocket."""

__version__ = "0.1.0"
