# Runs in every kernel before its first cell (IPython startup).
# A second interrupt that lands while IPython formats the first one's traceback (a user who
# clicks twice, or the gateway's re-send crossing a slow first interrupt) is caught inside
# showtraceback, which then prints a bare "KeyboardInterrupt" instead of publishing the error:
# the cell looked "complete". While the traceback is shown, further SIGINTs are ignored; the
# cell is already stopping.


def _shielded_from_sigint(show):
    # Imports inside: startup files run in the user's namespace, which must not keep them.
    import functools
    import signal

    @functools.wraps(show)
    def showtraceback(*args, **kwargs):
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: no SIGINT is delivered there anyway
            return show(*args, **kwargs)
        try:
            return show(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)

    return showtraceback


_shell = get_ipython()  # noqa: F821
_shell.showtraceback = _shielded_from_sigint(_shell.showtraceback)
del _shielded_from_sigint, _shell
