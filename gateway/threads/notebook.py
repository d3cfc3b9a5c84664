"""A thread's recorded cells as an nbformat v4 notebook (sans-I/O: records and image bytes
in, a validated notebook dict out)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import nbformat
from nbformat import v4

from .cells import IMAGE_TYPES


def build_notebook(records: list[dict], read_file: Callable[[str], bytes | None],
                   title: str) -> dict:
    """Every record in order as a code cell with its outputs; ``read_file(file_id)`` gives a
    displayed image's bytes (None: gone, left out). Raises ``nbformat.ValidationError``."""
    notebook = v4.new_notebook()
    notebook.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "code_interpreter_gateway": {"thread_id": title},
    })
    for record in records:
        cell = v4.new_code_cell(source=str(record.get("code", "")),
                                execution_count=_count(record.get("execution_count")))
        cell.outputs = [output for raw in record.get("outputs") or []
                        if (output := _output(raw, read_file)) is not None]
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def to_bytes(notebook: dict) -> bytes:
    return nbformat.writes(nbformat.from_dict(notebook)).encode()


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _output(raw: dict, read_file: Callable[[str], bytes | None]) -> dict | None:
    kind = raw.get("output_type")
    if kind == "stream":
        return v4.new_output("stream", name=raw.get("name", "stdout"), text=raw.get("text", ""))
    if kind == "error":
        return v4.new_output("error", ename=raw.get("ename", ""), evalue=raw.get("evalue", ""),
                             traceback=list(raw.get("traceback") or []))
    if kind not in ("execute_result", "display_data"):
        return None
    data = {mime: _value(mime, value) for mime, value in (raw.get("data") or {}).items()}
    for mime, file_id in (raw.get("files") or {}).items():
        content = read_file(file_id) if isinstance(file_id, str) else None
        if content is not None and mime in IMAGE_TYPES:
            data[mime] = (base64.b64encode(content).decode() if mime == "image/png"
                          else content.decode("utf-8", "replace"))
    if kind == "execute_result":
        return v4.new_output("execute_result", data=data,
                             execution_count=_count(raw.get("execution_count")))
    return v4.new_output("display_data", data=data)


def _value(mime: str, value: str) -> object:
    if mime == "application/json":
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value
