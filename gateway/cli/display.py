"""Terminal output for the CLI: rich tables and progress on a TTY, plain lines otherwise."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator

from rich.console import Console

from ..wire.envelopes import FENCE_CLOSE

console = Console()


def _human(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key.endswith("bytes") or key == "size":
        size = float(value)  # type: ignore[arg-type]
        for unit in ("B", "KiB", "MiB", "GiB"):
            if size < 1024 or unit == "GiB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
    if key.endswith("seconds") and isinstance(value, int | float):
        return f"{value:.1f}s"
    return str(value)


def print_result(result: object, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    from rich.table import Table

    if isinstance(result, list):
        rows = result
        columns = columns or (sorted(rows[0]) if rows else [])
        table = Table(*[c.replace("_seconds", "").replace("_bytes", "") for c in columns])
        for row in rows:
            table.add_row(*[_human(c, row.get(c)) for c in columns])
        console.print(table if rows else "(none)")
    elif isinstance(result, dict):
        table = Table("key", "value", show_header=False)
        for key, value in result.items():
            table.add_row(key, _human(key, value))
        console.print(table)
    else:
        print(result)


@contextlib.contextmanager
def progress(what: str) -> Iterator[None]:
    if console.is_terminal:
        with console.status(what + "..."):
            yield
    else:
        print(what + "...", file=sys.stderr, flush=True)
        yield
        print(what + ": done", file=sys.stderr, flush=True)


def print_envelope(envelope: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(envelope), flush=True)
        return
    chunk = envelope["chunk"]
    kind, content = chunk["type"], chunk["content"]
    if kind == "hot_code":
        # The closing fence is a chunk of its own and ends without a newline: output that
        # follows it goes on the next line.
        end = "\n" if content == FENCE_CLOSE else ""
        console.print(content, end=end, style="cyan", markup=False, highlight=False)
    elif kind == "hot_code_output":
        console.print(content, end="", markup=False, highlight=False)
    elif kind == "code_interpreter_stream":
        console.print(f"[file] {content['filename']} ({content['mime_type']}, "
                      f"id {content['file_id']})", style="green", markup=False)
    elif kind == "status":
        details = ", ".join(f"{k}={v}" for k, v in content.items() if k != "state")
        console.print(f"\n[{content['state']}] {details}", style="bold", markup=False)
    elif kind == "error":
        console.print(f"[error] {content['code']}: {content['message']}", style="red",
                      markup=False)
