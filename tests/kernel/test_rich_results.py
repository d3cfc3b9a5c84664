"""Rich results end to end: real sandboxed kernels, a real server, the display chunk on the wire."""

from __future__ import annotations

import base64

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.kernel]

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4"/></svg>'
EVERY_TYPE = f"""
from IPython.display import HTML, JSON, SVG, Latex, Markdown, display
import pandas as pd
display(HTML('<b>bold</b>'))
display(Markdown('# Title\\n\\n*it*'))
display(Latex(r'$$\\int_0^1 x\\,dx$$'))
display(JSON({{'a': [1, 2, {{'b': None}}]}}))
display(SVG({SVG!r}))
vega = {{'mark': 'bar', 'data': {{'values': [{{'x': 1}}]}}}}
plotly = {{'data': [{{'type': 'bar', 'y': [1]}}], 'layout': {{}}}}
display({{'application/vnd.vegalite.v5+json': vega, 'application/vnd.plotly.v1+json': plotly,
         'text/plain': 'a chart'}}, raw=True)
pd.DataFrame({{'city': ['Oslo', 'Lima'], 'temp': [3, 19]}})
"""


async def test_every_text_mime_type_arrives_inline(client, thread_id):
    result = await client.thread(thread_id).run(EVERY_TYPE)
    assert result.state == "complete", result.status
    data = [display["data"] for display in result.displays]
    assert data[0]["text/html"] == "<b>bold</b>"
    assert data[1]["text/markdown"] == "# Title\n\n*it*"
    assert data[2]["text/latex"] == "$$\\int_0^1 x\\,dx$$"
    assert data[3]["application/json"] == {"a": [1, 2, {"b": None}]}
    assert data[4]["image/svg+xml"] == SVG
    assert data[5]["application/vnd.vegalite.v5+json"]["mark"] == "bar"
    assert data[5]["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1]
    frame = result.displays[6]
    assert frame["source"] == "execute_result"
    assert "<table" in frame["data"]["text/html"] and "Oslo" in frame["data"]["text/html"]
    assert [d["source"] for d in result.displays[:6]] == ["display_data"] * 6
    # The text/plain fallback still reaches clients that ignore display chunks, labelled.
    outputs = [e["chunk"] for e in result.envelopes if e["chunk"]["type"] == "hot_code_output"]
    assert {"content": "a chart\n", "stream": "display", "type": "hot_code_output"} in outputs
    result_text = [c["content"] for c in outputs if c["stream"] == "result"]
    assert result_text and "Oslo" in result_text[0] and "<table" not in result_text[0]
    # The SVG is still stored as a file too, and its display names it.
    (svg_file,) = result.files
    assert result.displays[4]["files"]["image/svg+xml"]["file_id"] == svg_file["file_id"]


async def test_update_display_data_names_the_display_it_replaces(client, thread_id):
    result = await client.thread(thread_id).run(
        "from IPython.display import HTML, display\n"
        "handle = display(HTML('<p>step 1</p>'), display_id='progress')\n"
        "handle.update(HTML('<p>step 2</p>'))\n")
    assert result.state == "complete"
    first, update = result.displays
    assert first["source"] == "display_data" and update["source"] == "update_display_data"
    assert first["display_id"] == update["display_id"] == "progress"
    assert update["data"]["text/html"] == "<p>step 2</p>"


async def test_a_plot_is_a_file_and_its_display_points_at_it(client, thread_id):
    result = await client.thread(thread_id).run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
    (plot,) = result.files
    assert base64.b64decode(plot["base64"]).startswith(b"\x89PNG")
    (shown,) = result.displays
    assert shown["files"] == {"image/png": {"filename": plot["filename"],
                                            "file_id": plot["file_id"]}}
    assert "image/png" not in shown["data"]  # the bytes travel once, in the file chunk
    assert result.output == ""


async def test_streams_and_the_structured_error(client, thread_id):
    result = await client.thread(thread_id).run(
        "import sys\nprint('out')\nprint('err', file=sys.stderr, flush=True)\n"
        "def f(x):\n    return 1 / x\nf(0)")
    assert result.state == "error"
    streams = [(e["chunk"]["stream"], e["chunk"]["content"]) for e in result.envelopes
               if e["chunk"]["type"] == "hot_code_output"]
    assert ("stdout", "out\n") in streams and ("stderr", "err\n") in streams
    assert streams[-1][0] == "traceback" and "ZeroDivisionError" in streams[-1][1]
    error = result.status["error"]
    assert error["ename"] == "ZeroDivisionError" and error["evalue"] == "division by zero"
    assert error["traceback"][-1] == "ZeroDivisionError: division by zero"
    assert any("return 1 / x" in line for line in error["traceback"])
    assert not any("\x1b" in line for line in error["traceback"])


async def test_a_huge_display_is_capped_with_a_note(running, client, thread_id):
    limit = running.gateway.settings.max_display_chars
    result = await client.thread(thread_id).run(
        "from IPython.display import HTML, display\n"
        f"display(HTML('<td>x</td>' * {limit // 10 + 1}))")
    (shown,) = result.displays
    assert shown["data"] == {"text/plain": "<IPython.core.display.HTML object>"}
    assert shown["omitted"] == {"text/html": (limit // 10 + 1) * 10}
    assert "[rich display data truncated" in result.output
