"""The projectdavid SDK's view of our chunks: its chunk-to-event mapping, fed a copy."""

from __future__ import annotations

import copy

from gateway.wire import envelopes

RUN_ID = "run_interop"


def to_projectdavid_file_chunk(chunk: dict, base_url: str | None = None) -> dict:
    """The package's compat shape for file chunks; other chunks unchanged."""
    if chunk.get("type") != "code_interpreter_stream":
        return chunk
    return envelopes.projectdavid_file(chunk, base_url)


def new_sdk_stream():
    """The SDK's stream object, set up as for one run (the ``sdk_stream`` fixture)."""
    from projectdavid.clients.synchronous_inference_wrapper import SynchronousInferenceStream

    stream = SynchronousInferenceStream(inference=None)  # the mapping needs no live clients
    stream.setup(thread_id="thread_pd", assistant_id="asst_pd", message_id="msg_pd",
                 run_id=RUN_ID)
    return stream


def to_event(sdk_stream, raw: dict):
    # The SDK writes run_id into the chunk it unwraps: hand it a copy, keep ours pristine.
    return sdk_stream._map_chunk_to_event(copy.deepcopy(raw))
