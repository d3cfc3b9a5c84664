# Runs in every kernel before its first cell (IPython startup).
# In gVisor (sandbox = gvisor) a signal sent to a process goes to any of its threads, where
# Linux prefers the main one: ipykernel's interrupt (killpg from its control thread) then waits
# until the main thread's sleep or blocking call ends by itself. There the main thread gets the
# signal directly too; CPython turns both into one KeyboardInterrupt.
# A fresh kernel's first traceback imports and sets up ~30 modules (pygments, stack_data, ...):
# ~3 s in gVisor, long enough for an interrupt to outlast interrupt_grace and for a user's first
# error to stall. One traceback is formatted here, unseen, while the kernel waits in the pool.


def _interrupt_the_main_thread_too(kernel):
    # Imports inside: startup files run in the user's namespace, which must not keep them.
    import functools
    import signal
    import threading

    send = kernel._send_interrupt_children
    main = threading.main_thread().ident

    @functools.wraps(send)
    def send_interrupt():
        try:
            send()
        finally:
            signal.pthread_kill(main, signal.SIGINT)

    kernel._send_interrupt_children = send_interrupt


def _format_one_traceback(shell):
    import sys

    try:
        raise ZeroDivisionError("warm-up")
    except ZeroDivisionError:
        shell.InteractiveTB.structured_traceback(*sys.exc_info())


def _in_gvisor():
    import os

    return os.environ.get("KERNEL_SANDBOX") == "gvisor"


if _in_gvisor() and getattr(get_ipython(), "kernel", None) is not None:  # noqa: F821
    _interrupt_the_main_thread_too(get_ipython().kernel)  # noqa: F821
    _format_one_traceback(get_ipython())  # noqa: F821
del _interrupt_the_main_thread_too, _format_one_traceback, _in_gvisor
