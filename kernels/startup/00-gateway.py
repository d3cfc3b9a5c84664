# Runs in every kernel before its first cell (IPython startup).
# Inline png for plt.show(), no GUI backend, and the usual data-analysis imports warmed so the
# first cell of a new thread does not pay for them (the pool starts kernels ahead of time).
import os as _os

_os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")

try:
    import matplotlib as _mpl

    _mpl.use("module://matplotlib_inline.backend_inline")
    import matplotlib.pyplot as _plt  # noqa: F401
    from matplotlib_inline.backend_inline import set_matplotlib_formats as _formats

    _formats("png")
    import numpy as _np  # noqa: F401
    import pandas as _pd  # noqa: F401
except ImportError:  # a kernel image without them still works
    pass

del _os
