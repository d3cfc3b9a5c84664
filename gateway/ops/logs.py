"""Logging set-up: plain lines for people, JSON lines for log collectors."""

from __future__ import annotations

import logging
import sys

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("thread_id", "identity", "call_id", "kernel_id", "state"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def configure(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # jupyter_client and traitlets are chatty about things operators cannot act on.
    logging.getLogger("traitlets").setLevel(logging.WARNING)
    # One line per websocket open/close is noise at scale; the metrics count connections.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
