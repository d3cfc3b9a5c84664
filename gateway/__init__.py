"""Code-interpreter gateway: sandboxed, stateful IPython kernels per chat thread, streamed live."""

__version__ = "0.1.0"
