"""One executed cell as a notebook cell: its code, execution count and outputs, built from the
kernel's iopub messages (sans-I/O; the session feeds it and stores the result).

Images are not kept inline: the session stores each shown image as a file of the thread
anyway, and the record names that file (``attach_file``); the notebook export reads it back.
"""

from __future__ import annotations

import json
import time

INTERNAL_PREFIX = ".gateway/"  # the gateway's own files of a thread; no workdir scan makes one
CELL_NAME = INTERNAL_PREFIX + "cell"  # each cell's record, a file of the thread in the store
IMAGE_TYPES = ("image/png", "image/svg+xml")  # what the translator stores as plot files
KEPT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")


class CellRecord:
    """Folds one cell's iopub messages into nbformat v4 outputs, text capped at ``limit``."""

    def __init__(self, code: str, limit: int) -> None:
        self.code = code
        self.limit = limit
        self.used = 0
        self.dropped = 0
        self.execution_count: int | None = None
        self.outputs: list[dict] = []

    def add(self, msg: dict) -> None:
        kind = msg.get("header", {}).get("msg_type")
        content = msg.get("content") or {}
        if kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind == "stream":
            self._stream(content.get("name", "stdout"), str(content.get("text", "")))
        elif kind == "execute_result":
            self.outputs.append({"output_type": "execute_result",
                                 "execution_count": content.get("execution_count"),
                                 "data": self._data(content.get("data") or {}), "metadata": {}})
        elif kind == "display_data":
            data = content.get("data") or {}
            output = {"output_type": "display_data", "data": self._data(data), "metadata": {}}
            image = next((mime for mime in IMAGE_TYPES if mime in data), None)
            if image is not None:
                output["files"] = {image: None}  # filled by attach_file once stored
            self.outputs.append(output)
        elif kind == "error":
            traceback = [self._take(str(line)) for line in content.get("traceback") or []]
            self.outputs.append({"output_type": "error", "ename": str(content.get("ename", "")),
                                 "evalue": self._take(str(content.get("evalue", ""))),
                                 "traceback": traceback})
        elif kind == "clear_output":
            self.outputs.clear()

    def attach_file(self, mime_type: str | None, file_id: str) -> None:
        """The stored file of the latest displayed image of this type."""
        for output in reversed(self.outputs):
            files = output.get("files")
            if files and mime_type in files and files[mime_type] is None:
                files[mime_type] = file_id
                return

    def to_json(self, call_id: str, state: str) -> bytes:
        return json.dumps({"version": 1, "call_id": call_id, "state": state,
                           "recorded": time.time(), "code": self.code,
                           "execution_count": self.execution_count, "outputs": self.outputs,
                           "dropped_chars": self.dropped}).encode()

    # -- helpers -----------------------------------------------------------------------------
    def _stream(self, name: str, text: str) -> None:
        text = self._take(text)
        last = self.outputs[-1] if self.outputs else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def _data(self, data: dict) -> dict:
        return {mime: self._take(value if isinstance(value, str) else json.dumps(value))
                for mime, value in data.items() if mime in KEPT_TYPES}

    def _take(self, text: str) -> str:
        room = max(0, self.limit - self.used)
        if len(text) > room:
            self.dropped += len(text) - room
            text = text[:room]
        self.used += len(text)
        return text
