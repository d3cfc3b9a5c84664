# Runs in every kernel before its first cell (IPython startup).
# Inline png for plt.show(), no GUI backend, and the usual data-analysis imports warmed so the
# first cell of a new thread does not pay for them (the pool starts kernels ahead of time).
import io as _io
import logging as _logging
import os as _os
import sys as _sys

# exit()/quit() would stop the kernel a moment after the cell, so the death would land on a
# later, innocent cell. Like sys.exit() (which IPython catches), they end the cell, not the
# kernel; `restart` is how a thread gets a fresh kernel.
from IPython.core.autocall import ZMQExitAutocall as _ZMQExitAutocall


class _CellOnlyExit(_ZMQExitAutocall):
    def __call__(self, keep_kernel: bool = True) -> None:
        super().__call__(keep_kernel=True)


_shell = get_ipython()  # noqa: F821
_shell.exiter = _CellOnlyExit(_shell)
_shell.user_ns["exit"] = _shell.user_ns["quit"] = _shell.exiter

# ipykernel leaves its logger at DEBUG (only the handler filters), so every message builds
# several debug records nobody sees; at WARNING they are skipped before they are built.
if getattr(_shell, "kernel", None) is not None:
    _shell.kernel.log.setLevel(_logging.WARNING)
del _ZMQExitAutocall, _CellOnlyExit, _shell, _logging

_os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")

# A kernel forked from the zygote (kernels/zygote.py) inherits all of the below already done.
_warm = "matplotlib.backends.backend_agg" in _sys.modules
try:
    import matplotlib as _mpl

    _mpl.use("module://matplotlib_inline.backend_inline")
    import matplotlib.pyplot as _plt  # noqa: F401
    from matplotlib_inline.backend_inline import set_matplotlib_formats as _formats

    _formats("png")
    import numpy as _np
    import pandas as _pd

    # The first figure and the first groupby of a process load fonts, the Agg renderer and
    # pandas' compiled paths: pay for that here, while the kernel waits in the pool.
    if not _warm:
        _figure = _plt.figure(figsize=(2, 2))
        _figure.gca().plot([0, 1], [0, 1])
        _figure.savefig(_io.BytesIO(), format="png")
        _plt.close(_figure)
        del _figure
        _pd.DataFrame({"k": _np.arange(100) % 3, "v": _np.arange(100)}).groupby("k").v.sum()
    del _np, _pd, _plt, _mpl, _formats
except ImportError:  # a kernel image without them still works
    pass

del _io, _os, _sys, _warm
