"""Per-execution environment variables: ``execute.env`` is validated, visible to its cell only,
and gone in the next one (Python here; bash in test_languages.py).

The gateway half; the pure half is tests/unit/test_env.py."""

from __future__ import annotations

import logging

import pytest

on_loop = pytest.mark.asyncio(loop_scope="session")


@on_loop
async def test_env_is_visible_in_its_cell_and_gone_in_the_next(client, thread_id, caplog):
    thread = client.thread(thread_id)
    setup = await thread.run("import os, subprocess")
    assert setup.state == "complete"
    secret = "v4lue-with 'quotes' and \"more\" $HOME \\n"
    caplog.set_level(logging.DEBUG)
    with_env = await thread.run(
        "print(os.environ['API_KEY']); print(os.environ['LANG'])\n"
        "print(subprocess.run(['sh', '-c', 'printf %s \"$API_KEY\"'], capture_output=True,"
        " text=True).stdout)",
        env={"API_KEY": secret, "LANG": "C"})
    assert with_env.state == "complete", with_env.output
    assert with_env.output == f"{secret}\nC\n{secret}\n"
    after = await thread.run("print(os.environ.get('API_KEY'), os.environ['LANG'])\n"
                             "print([k for k in dir(os) if 'gateway' in k])")
    assert after.output == "None C.UTF-8\n[]\n"  # unset again; LANG back to the sandbox's
    # Hidden cells take no execution count of their own and leave no trace in history.
    assert after.status["execution_count"] == with_env.status["execution_count"] + 1
    history = await thread.run("print([c for c in In[:-1] if '_gateway_saved_env' in c])")
    assert history.output == "[]\n"
    assert secret not in caplog.text


@on_loop
async def test_env_is_restored_after_a_failing_cell(client, thread_id):
    thread = client.thread(thread_id)
    failed = await thread.run("import os\nprint(os.environ['TOKEN'])\n1/0", env={"TOKEN": "t1"})
    assert failed.state == "error" and failed.output.startswith("t1\n")
    after = await thread.run("print(os.environ.get('TOKEN'))")
    assert after.output == "None\n"
