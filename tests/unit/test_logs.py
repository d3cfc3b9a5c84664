"""Log lines: JSON when asked, with ids, and never the code itself.

The pure half; the gateway half is tests/kernel/test_logs_execution.py."""

import json
import logging

from gateway.ops.logs import JsonFormatter


def test_json_lines_carry_ids_and_no_code():
    record = logging.LogRecord("gateway.threads.session", logging.INFO, __file__, 1,
                               "thread %s call %s: %s", ("t1", "c1", "complete"), None)
    record.thread_id, record.call_id, record.state = "t1", "c1", "complete"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "thread t1 call c1: complete"
    assert (line["thread_id"], line["call_id"], line["state"]) == ("t1", "c1", "complete")
    assert line["level"] == "INFO"
