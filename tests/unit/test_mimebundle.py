"""Rich displays: MIME bundles -> display chunks, files, the text/plain fallback and the caps.
Pure: iopub messages in, items out; no kernel."""

from __future__ import annotations

import base64

from gateway.wire import envelopes
from gateway.wire.mimebundle import DisplayBudget, display_size
from gateway.wire.replay import ENVELOPE_OVERHEAD, approximate_size
from gateway.wire.translate import Display, DisplayedFile, OutputTranslator
from support.messages import IPYTHON_TRACEBACK, SVG, msg, stream, texts, tiny_png

VEGA = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "bar",
        "data": {"values": [{"a": 1}]}}


def bundle(data: dict, msg_type: str = "display_data", display_id: str | None = None,
           metadata: dict | None = None) -> dict:
    transient = {"display_id": display_id} if display_id else {}
    if msg_type == "execute_result":
        return msg(msg_type, execution_count=1, data=data, metadata=metadata or {})
    return msg(msg_type, data=data, metadata=metadata or {}, transient=transient)


def test_text_types_travel_inline_in_the_kernels_order_json_as_json():
    data = {"text/html": "<table><tr><td>1</td></tr></table>", "text/markdown": "# Hi",
            "text/latex": "$x^2$", "application/json": {"a": [1, 2]}, "image/svg+xml": SVG,
            "application/vnd.vegalite.v5+json": VEGA,
            "application/vnd.plotly.v1+json": {"data": [], "layout": {}},
            "text/plain": "<IPython.core.display.HTML object>"}
    items = OutputTranslator().translate(bundle(data, "execute_result"))
    shown = next(item for item in items if isinstance(item, Display))
    chunk = shown.chunk("file_1")
    assert chunk["type"] == "display"
    content = chunk["content"]
    assert content["source"] == "execute_result" and content["display_id"] is None
    assert list(content["data"]) == list(data)
    assert content["data"] == data
    assert "omitted" not in content
    # An SVG without a raster is still stored as a file, and the display names it.
    assert content["files"] == {"image/svg+xml": {"filename": "plot_1.svg", "file_id": "file_1"}}


def test_text_plain_fallback_follows_the_display_labelled_result_or_display():
    t = OutputTranslator()
    result = t.translate(bundle({"text/html": "<b>1</b>", "text/plain": "1"}, "execute_result"))
    assert isinstance(result[0], Display)
    assert result[1:] == [envelopes.output("1\n", "result")]
    shown = t.translate(bundle({"text/markdown": "*a*", "text/plain": "a"}))
    assert shown[1:] == [envelopes.output("a\n", "display")]
    assert t.text == "1\na\n"


def test_lists_of_lines_are_joined():
    (item,) = OutputTranslator().translate(bundle({"text/html": ["<p>", "x", "</p>"]}))
    assert item.data == {"text/html": "<p>x</p>"}


def test_display_id_and_updates():
    t = OutputTranslator()
    first = t.translate(bundle({"text/plain": "0%"}, display_id="bar-1"))
    update = t.translate(bundle({"text/plain": "100%"}, "update_display_data", "bar-1"))
    assert first[0].chunk()["content"]["display_id"] == "bar-1"
    assert update[0].chunk()["content"] == {"source": "update_display_data",
                                            "display_id": "bar-1", "data": {"text/plain": "100%"}}


def test_binary_images_are_files_and_not_inline():
    png, jpeg = tiny_png(), b"\xff\xd8\xff\xe0fake-jpeg"
    t = OutputTranslator()
    items = t.translate(bundle({"image/png": base64.b64encode(png).decode(),
                                "text/plain": "<Figure size 640x480 with 1 Axes>"}))
    assert items[0] == DisplayedFile("plot_1.png", "image/png", png)
    shown = items[1]
    assert shown.data == {"text/plain": "<Figure size 640x480 with 1 Axes>"}
    assert shown.chunk("file_x")["content"]["files"] == {
        "image/png": {"filename": "plot_1.png", "file_id": "file_x"}}
    assert "files" not in shown.chunk(None)["content"]  # not stored (quota): nothing to name
    assert texts(items) == ""  # the <Figure ...> repr is not output text
    (stored, _) = t.translate(bundle({"image/jpeg": base64.b64encode(jpeg).decode()}))
    assert stored == DisplayedFile("plot_2.jpg", "image/jpeg", jpeg)


def test_invalid_base64_falls_back_to_the_next_representation():
    items = OutputTranslator().translate(bundle({"image/png": "not base64!!", "text/plain": "x"}))
    assert not any(isinstance(item, DisplayedFile) for item in items)
    assert texts(items) == "x\n"


def test_the_budget_omits_what_does_not_fit_and_keeps_the_small_parts():
    t = OutputTranslator(max_display_chars=1000)
    big = "<table>" + "<tr><td>1</td></tr>" * 100 + "</table>"
    (shown, text) = t.translate(bundle({"text/html": big, "text/plain": "   a\n0  1"}))
    content = shown.chunk()["content"]
    assert content["data"] == {"text/plain": "   a\n0  1"}
    assert content["omitted"] == {"text/html": len(big)}
    assert text == envelopes.output("   a\n0  1\n", "display")
    (later, _) = t.translate(bundle({"text/html": "<b>small</b>", "text/plain": "small"}))
    assert later.data == {"text/html": "<b>small</b>", "text/plain": "small"}
    assert t.finish() == [envelopes.output(
        f"\n[rich display data truncated: {len(big):,} characters not sent inline, "
        "limit 1,000]\n", "note")]


def test_budget_counts_json_as_serialized():
    budget = DisplayBudget(20)
    inline, omitted = budget.take({"application/json": {"key": "x" * 30}, "text/plain": "{}"})
    assert inline == {"text/plain": "{}"}
    assert omitted == {"application/json": len('{"key":"' + "x" * 30 + '"}')}


def test_metadata_kept_when_small_dropped_when_large():
    t = OutputTranslator()
    (small,) = t.translate(bundle({"text/html": "<i>x</i>"}, metadata={"isolated": True}))
    (large,) = t.translate(bundle({"text/html": "<i>x</i>"}, metadata={"x": "y" * 20_000}))
    assert small.chunk()["content"]["metadata"] == {"isolated": True}
    assert "metadata" not in large.chunk()["content"]


def test_streams_are_named():
    t = OutputTranslator(max_output_chars=30)
    chunks = (t.translate(stream("out\n")) + t.translate(stream("err\n", "stderr"))
              + t.translate(msg("error", ename="ZeroDivisionError", evalue="division by zero",
                                traceback=IPYTHON_TRACEBACK))
              + t.translate(stream("x" * 100)) + t.finish())
    assert [c["stream"] for c in chunks] == ["stdout", "stderr", "traceback", "stdout", "note"]


def test_error_keeps_ename_evalue_and_clean_traceback_lines():
    t = OutputTranslator()
    t.translate(msg("error", ename="ZeroDivisionError", evalue="division by zero",
                    traceback=IPYTHON_TRACEBACK))
    assert t.error == ("ZeroDivisionError", "division by zero")
    assert t.traceback[-1] == "ZeroDivisionError: division by zero"
    assert all("\x1b" not in line and "\n" not in line for line in t.traceback)
    assert any("----> 1" in line for line in t.traceback)


def test_replay_buffer_counts_a_displays_nested_data():
    html = "<td>1</td>" * 10_000
    chunk = Display("display_data", {"text/html": html}).chunk()
    size = approximate_size(envelopes.envelope(chunk, "t", "c"))
    assert size >= ENVELOPE_OVERHEAD + len(html)
    assert display_size(chunk["content"]) >= len(html)
