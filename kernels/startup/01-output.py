# Runs in every kernel before its first cell (IPython startup).
# ZeroMQ's default send high-water mark (1,000 messages) makes the iopub socket drop what does
# not fit while the gateway is slow to read (a busy host): a loop that flushes every line lost
# blocks of hundreds of lines, and a dropped "idle" would leave the cell running until its
# timeout. Unbounded here, so a flood queues in the kernel's own memory, under its limit.
# libzmq applies the option to pipes already connected; it is set on the iopub thread, which
# owns the socket. A connection still being set up at that moment keeps the default: a kernel
# forked from the zygote is up fast enough to meet that, so there it is set before the bind
# (kernels/zygote.py); an exec'd kernel is connected long before its startup scripts run.


def _unbounded_iopub():
    import zmq

    kernel = getattr(get_ipython(), "kernel", None)  # noqa: F821
    thread = getattr(kernel, "iopub_thread", None)
    if thread is None:
        return
    thread.io_loop.add_callback(thread.socket.setsockopt, zmq.SNDHWM, 0)


_unbounded_iopub()
del _unbounded_iopub
