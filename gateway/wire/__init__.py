"""The wire format, with no I/O: requests in, envelopes out, iopub messages translated, code
pre-streamed from tool-call fragments, replay kept for resuming clients."""
