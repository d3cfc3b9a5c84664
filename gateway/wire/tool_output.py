"""The text handed back to the model as the tool result: condensed, with head and tail kept.

A model needs the start of an output (what happened) and its end (the result or the exception),
not a megabyte of the middle, so long outputs keep both ends with a marker for what was cut.
"""

from __future__ import annotations

from .translate import collapse_returns

DEFAULT_LIMIT = 4000
HEAD_SHARE = 0.4  # of the limit; the tail gets the rest (it holds results and exceptions)


def condense(text: str, limit: int = DEFAULT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    head_size = int(limit * HEAD_SHARE)
    tail_size = limit - head_size
    head, tail = text[:head_size], text[-tail_size:]
    # Cut at line boundaries where one is near, so no line is shown half.
    if (newline := head.rfind("\n")) > head_size // 2:
        head = head[: newline + 1]
    if 0 <= (newline := tail.find("\n")) < tail_size // 2:
        tail = tail[newline + 1 :]
    cut = len(text) - len(head) - len(tail)
    cut_lines = text.count("\n", len(head), len(text) - len(tail))
    return f"{head}\n[... {cut:,} characters ({cut_lines:,} lines) cut ...]\n{tail}"


def tool_output(
    text: str,
    state: str,
    files: list[str],
    reason: str | None = None,
    dropped_chars: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> str:
    """What the platform returns to the model for one execution.

    A rewritten line counts once, at its last state (the translator's text already is; raw text
    from elsewhere is collapsed here): a 10,000-step progress bar must not eat the budget."""
    text = collapse_returns(text)
    parts = [condense(text, limit).rstrip("\n")] if text else []
    if dropped_chars:
        parts.append(f"[output capped: {dropped_chars:,} more characters were not captured]")
    if files:
        parts.append("Generated files: " + ", ".join(files))
    if state != "complete" and state != "error":
        parts.append(f"[execution {state}{': ' + reason if reason else ''}]")
    if not parts:
        parts.append("[no output]")
    return "\n".join(parts)
