"""Log lines: JSON when asked, with ids, and never the code itself."""

import json
import logging

import pytest

from gateway.ops.logs import JsonFormatter


def test_json_lines_carry_ids_and_no_code():
    record = logging.LogRecord("gateway.threads.session", logging.INFO, __file__, 1,
                               "thread %s call %s: %s", ("t1", "c1", "complete"), None)
    record.thread_id, record.call_id, record.state = "t1", "c1", "complete"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "thread t1 call c1: complete"
    assert (line["thread_id"], line["call_id"], line["state"]) == ("t1", "c1", "complete")
    assert line["level"] == "INFO"


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
