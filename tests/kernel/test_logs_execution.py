"""Log lines: JSON when asked, with ids, and never the code itself.

The gateway half; the pure half is tests/unit/test_logs.py."""

import logging

import pytest


@pytest.mark.asyncio(loop_scope="session")
async def test_execution_is_logged_with_ids_but_without_code_or_output(client, thread_id,
                                                                       caplog):
    caplog.set_level(logging.DEBUG)
    marker = "SECRET_MARKER_93751"
    result = await client.thread(thread_id).run(
        f"print('{marker}')\nopen('{marker}.txt', 'w').write('{marker}')")
    assert result.state == "complete"
    finished = [r for r in caplog.records if getattr(r, "thread_id", None) == thread_id]
    assert finished and finished[-1].call_id == result.call_id
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert marker not in record.getMessage()
