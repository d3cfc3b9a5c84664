"""Cell records from iopub messages, and the notebook built from them: pure, no kernel."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest

from gateway.threads.cells import CellRecord
from gateway.threads.notebook import build_notebook, to_bytes

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA"
                       "WjR9awAAAABJRU5ErkJggg==")


def msg(kind: str, **content) -> dict:
    return {"header": {"msg_type": kind}, "content": content}


def recorded(limit: int = 10_000) -> CellRecord:
    record = CellRecord("print('a')\n1 + 1", limit)
    for message in [msg("execute_input", execution_count=3),
                    msg("stream", name="stdout", text="a"),
                    msg("stream", name="stdout", text="b\n"),
                    msg("stream", name="stderr", text="warn\n"),
                    msg("display_data", data={"image/png": base64.b64encode(PNG).decode(),
                                              "text/plain": "<Figure>"}),
                    msg("execute_result", execution_count=3, data={"text/plain": "2"}),
                    msg("error", ename="ValueError", evalue="bad", traceback=["tb1", "tb2"]),
                    msg("status", execution_state="idle")]:
        record.add(message)
    return record


def test_record_folds_streams_and_keeps_order():
    record = recorded()
    kinds = [o["output_type"] for o in record.outputs]
    assert kinds == ["stream", "stream", "display_data", "execute_result", "error"]
    assert record.outputs[0]["text"] == "ab\n" and record.outputs[1]["name"] == "stderr"
    assert record.execution_count == 3
    assert "image/png" not in record.outputs[2]["data"], "images live in the file store"
    record.attach_file("image/png", "file_1")
    assert record.outputs[2]["files"] == {"image/png": "file_1"}


def test_record_caps_text_and_counts_what_it_dropped():
    record = CellRecord("x", limit=10)
    record.add(msg("stream", name="stdout", text="0123456789abcdef"))
    assert record.outputs[0]["text"] == "0123456789" and record.dropped == 6
    assert json.loads(record.to_json("c1", "complete"))["dropped_chars"] == 6


def test_clear_output_drops_what_came_before():
    record = CellRecord("x", 100)
    record.add(msg("stream", name="stdout", text="old"))
    record.add(msg("clear_output", wait=False))
    record.add(msg("stream", name="stdout", text="new"))
    assert record.outputs == [{"output_type": "stream", "name": "stdout", "text": "new"}]


def test_notebook_is_valid_v4_with_images_from_the_store():
    record = recorded()
    record.attach_file("image/png", "file_1")
    records = [json.loads(record.to_json("c1", "error")),
               json.loads(CellRecord("x = 1", 100).to_json("c2", "complete"))]
    notebook = build_notebook(records, {"file_1": PNG}.get, "t1")
    nbformat.validate(notebook)
    first, second = notebook["cells"]
    assert first["source"] == "print('a')\n1 + 1" and first["execution_count"] == 3
    display = first["outputs"][2]
    assert base64.b64decode(display["data"]["image/png"]) == PNG
    assert first["outputs"][3]["data"]["text/plain"] == "2"
    assert first["outputs"][4]["ename"] == "ValueError"
    assert second["outputs"] == [] and second["execution_count"] is None
    again = nbformat.reads(to_bytes(notebook).decode(), as_version=4)
    assert again["cells"][0]["outputs"][0]["text"] == "ab\n"


def test_a_lost_image_leaves_its_text_and_the_notebook_valid():
    record = recorded()
    record.attach_file("image/png", "file_gone")
    notebook = build_notebook([json.loads(record.to_json("c1", "error"))],
                              lambda file_id: None, "t1")
    assert notebook["cells"][0]["outputs"][2]["data"] == {"text/plain": "<Figure>"}


def test_a_malformed_record_is_refused_not_served():
    with pytest.raises(nbformat.ValidationError):
        build_notebook([{"code": "x", "outputs": [{"output_type": "stream", "name": 5,
                                                   "text": "x"}]}], lambda _: None, "t")
