"""Interop with the projectdavid SDK, the gateway half: real envelopes from a real gateway
through the SDK's chunk-to-event mapping. How the SDK maps each chunk type, and why files and
errors need the opt-in flat compat shapes, is in tests/unit/test_projectdavid_shapes.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import pytest
import pytest_asyncio

from gateway.errors import GatewayError
from gateway.wire import envelopes
from support.projectdavid import RUN_ID, to_event, to_projectdavid_file_chunk

pytestmark = pytest.mark.asyncio(loop_scope="session")

CODE = ("import matplotlib.pyplot as plt\n"
        "print('caf\u00e9 \U0001F600 <ok>')\n"
        "plt.plot([3, 1, 2])\n"
        "plt.show()\n"
        "open('table.csv', 'w').write('a,b\\n1,2\\n')\n"
        "6 * 7")






@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def result(running):
    """One real call for the whole module: the code streamed as tool-call argument fragments,
    then executed. Its thread is closed afterwards (its kernel goes back to the pool)."""
    thread_id = "projectdavid-interop"
    client = await running.client()
    try:
        thread = client.thread(thread_id)
        arguments = json.dumps({"code": CODE})
        call_id = "pd-call-1"
        await thread.send_code(call_id,
                               [arguments[i:i + 7] for i in range(0, len(arguments), 7)])
        await thread.execute(call_id=call_id)
        result = await thread.collect(call_id, timeout=120)
        result.client = client  # to download the files
        yield result
    finally:
        with contextlib.suppress(GatewayError):
            await running.gateway.close_thread(thread_id, "alice")
        await client.close()


async def test_hot_code_and_output_map_to_sdk_events_unchanged(result, sdk_stream):
    from projectdavid.events import CodeExecutionOutputEvent, HotCodeEvent

    assert result.state == "complete", result.envelopes[-1]
    hot, output = [], []
    for envelope in result.envelopes:
        assert "type" not in envelope  # else the SDK would dispatch on it and miss the chunk
        chunk = envelope["chunk"]
        event = to_event(sdk_stream, envelope)
        if chunk["type"] == "hot_code":
            assert isinstance(event, HotCodeEvent)
            assert event.content == chunk["content"]
            assert event.run_id == RUN_ID
            assert event.to_dict() == {"run_id": RUN_ID, "content": chunk["content"],
                                       "type": "hot_code"}
            hot.append(event.content)
        elif chunk["type"] == "hot_code_output":
            assert isinstance(event, CodeExecutionOutputEvent)
            assert event.content == chunk["content"]
            assert event.to_dict()["type"] == "code_output"
            output.append(event.content)
        else:  # code_interpreter_stream and status: not SDK chunk types
            assert event is None, (chunk["type"], event)

    assert len(hot) > 3, "the code should arrive in several hot_code chunks"
    assert "".join(hot) == result.hot_code == f"{envelopes.FENCE_OPEN}{CODE}{envelopes.FENCE_CLOSE}"
    assert "".join(output) == result.output == "caf\u00e9 \U0001F600 <ok>\n42\n"


async def test_envelopes_relayed_inside_content_chunks_unwrap_the_same(result, sdk_stream):
    """The platform may relay tool output as JSON text in a ``content`` chunk; the SDK unwraps
    anything with a ``stream_type`` there (step 1 of its mapping)."""
    assert result.state == "complete", result.envelopes[-1]
    for envelope in result.envelopes:
        if envelope["chunk"]["type"] not in ("hot_code", "hot_code_output"):
            continue
        relayed = {"type": "content", "content": json.dumps(envelope)}
        direct, unwrapped = to_event(sdk_stream, envelope), to_event(sdk_stream, relayed)
        assert type(unwrapped) is type(direct)
        assert unwrapped.content == direct.content == envelope["chunk"]["content"]


async def test_file_chunks_need_the_flat_compat_shape(running, result, sdk_stream):
    from projectdavid.events import CodeExecutionGeneratedFileEvent

    assert result.state == "complete", result.envelopes[-1]
    files = [e for e in result.envelopes if e["chunk"]["type"] == "code_interpreter_stream"]
    assert [e["chunk"]["content"]["filename"] for e in files] == ["plot_1.png", "table.csv"]

    for envelope in files:
        nested = envelope["chunk"]
        assert to_event(sdk_stream, envelope) is None  # as is, the SDK drops our files

        flat = to_projectdavid_file_chunk(nested, base_url=running.http)
        compat = {**envelope, "chunk": flat}  # same routing keys, flat chunk
        event = to_event(sdk_stream, compat)
        assert isinstance(event, CodeExecutionGeneratedFileEvent)
        content = nested["content"]
        assert event.run_id == RUN_ID
        assert event.filename == content["filename"]
        assert event.file_id == content["file_id"]
        assert event.mime_type == content["mime_type"]
        assert event.base64_data == content["base64"]
        assert event.url == f"{running.http}/files/{content['file_id']}"
        assert event.to_dict()["type"] == "generated_file"
        stored = await asyncio.to_thread(result.client.download, event.file_id)
        assert base64.b64decode(event.base64_data) == stored

    plot = to_event(sdk_stream, {**files[0], "chunk": to_projectdavid_file_chunk(
        files[0]["chunk"])})
    assert plot.mime_type == "image/png" and plot.base64_data.startswith("iVBOR")
    assert plot.url == ""  # no base URL known: the SDK's default


async def test_compat_gateway_streams_files_and_errors_the_sdk_understands(data_root, sdk_stream):
    from projectdavid.events import CodeExecutionGeneratedFileEvent, WebStatusEvent

    from support.gateways import start_gateway, stop_gateway, test_settings

    running = await start_gateway(test_settings(data_root / "pd-compat", pool_size=1,
                                                projectdavid_compat=True,
                                                public_url="https://gw.example"))
    try:
        async with await running.client() as client:
            thread = client.thread("pd-compat")
            result = await thread.run("open('r.csv', 'w').write('a\\n1\\n')")
            kinds = [e["chunk"]["type"] for e in result.envelopes]
            assert kinds.count("code_interpreter_stream") == 1, "the contract's chunk stays"
            flat = [e for e in result.envelopes if e["chunk"]["type"] == "code_interpreter_file"]
            assert len(flat) == 1
            event = to_event(sdk_stream, flat[0])
            assert isinstance(event, CodeExecutionGeneratedFileEvent)
            assert event.filename == "r.csv" and base64.b64decode(event.base64_data) == b"a\n1\n"
            assert event.url == f"https://gw.example/files/{event.file_id}"
            await client.send({"type": "bogus", "thread_id": "pd-compat", "call_id": "x"})
            error = await client.next_envelope("pd-compat", "x", timeout=30)
            event = to_event(sdk_stream, error)
            assert isinstance(event, WebStatusEvent)
            assert event.message.startswith("unknown_type: ")
            assert event.tool == "code_interpreter"
    finally:
        await stop_gateway(running)
