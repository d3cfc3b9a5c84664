"""The I/O shell of the adapters: actions in, gateway messages out, results back.

A fragment is sent as a ``code_delta`` the moment its action arrives (the gateway turns it into
``hot_code`` for every watcher); a closed call is executed at once and collected in the
background, so later calls of the same turn stream while earlier ones run.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from gateway.client import Result, Thread

from ...wire.hotcode import Format
from ...wire.tool_output import tool_output
from .calls import Action, ArgumentsDelta, CallClosed


@dataclass(frozen=True)
class ToolResult:
    """One executed tool call: what the model asked for and what the gateway gave back."""

    call_id: str  # the gateway's call id (the provider's when it is a valid id)
    provider_id: str  # the id the model gave the call: tool results must name it
    name: str
    arguments: str
    result: Result

    @property
    def state(self) -> str | None:
        return self.result.state

    @property
    def is_error(self) -> bool:
        return self.state != "complete"

    @property
    def text(self) -> str:
        """The condensed text for the model: the gateway's own ``tool_output`` when the
        status carries it, else built the same way from the folded output."""
        status = self.result.status
        if "tool_output" in status:
            return status["tool_output"]
        if self.result.error is not None:
            error = self.result.error
            return f"[gateway refused the call: {error['code']}: {error['message']}]"
        return tool_output(self.result.output, self.state or "error", status.get("files", []),
                           status.get("reason"))


class ToolCallRunner:
    """Sends one thread's code deltas and executions; ``results()`` waits for them all."""

    def __init__(self, thread: Thread, fmt: Format, *, timeout: float | None = None,
                 wait: float | None = 3600) -> None:
        self.thread = thread
        self.format: Format = fmt
        self.timeout = timeout  # per cell, as in an execute request (None: the gateway's)
        self.wait = wait  # how long results() waits for one call
        self._sent: dict[str, list[str]] = {}
        self._running: list[tuple[CallClosed, asyncio.Task[Result]]] = []
        self.provider_ids: dict[str, str] = {}

    async def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, ArgumentsDelta):
                self._sent.setdefault(action.call_id, []).append(action.delta)
                await self.thread.send_code(action.call_id, [action.delta], self.format)
            else:
                await self._execute(action)

    async def _execute(self, call: CallClosed) -> None:
        code = None
        sent = "".join(self._sent.pop(call.call_id, []))
        if sent != call.arguments:
            # The provider's final arguments differ from its fragments (or none were
            # streamed): run what the model finally said, not what was pre-streamed.
            code = call.arguments if self.format == "raw" else _code_of(call.arguments)
        await self.thread.execute(code, call_id=call.call_id, timeout=self.timeout)
        collecting = asyncio.create_task(self.thread.collect(call.call_id, self.wait))
        self._running.append((call, collecting))

    async def results(self, provider_ids: dict[str, str] | None = None) -> list[ToolResult]:
        """Every executed call's result, in the order the calls closed."""
        done: list[ToolResult] = []
        running, self._running = self._running, []
        for call, collecting in running:
            result = await collecting
            provider_id = (provider_ids or {}).get(call.call_id, call.call_id)
            done.append(ToolResult(call.call_id, provider_id, call.name, call.arguments, result))
        return done

    def cancel(self) -> None:
        for _, collecting in self._running:
            collecting.cancel()


def _code_of(arguments: str) -> str | None:
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    code = value.get("code") if isinstance(value, dict) else None
    return code if isinstance(code, str) else None
