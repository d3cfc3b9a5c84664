"""The thread as a notebook, end to end: GET /threads/{id}/notebook, `gateway thread export`,
and the exported notebook re-executed with nbclient giving the same outputs."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

CELLS = [
    "import numpy as np\nvalues = np.arange(10)\nprint('sum', values.sum())",
    "values.mean()",
    "import matplotlib.pyplot as plt\nplt.plot(values, values ** 2)\nplt.title('squares')\n"
    "plt.show()",
    "import sys\nprint('to stderr', file=sys.stderr)\n{'n': int(values.max())}",
    "1 / 0",
]


async def get(http: str, path: str, token: str | None) -> tuple[int, bytes, dict]:
    def fetch():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(http + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    return await asyncio.to_thread(fetch)


def comparable(cell) -> list:
    """What must match between the gateway's run and a re-run: text, results, errors, and
    that an image is there (its bytes may differ with fonts)."""
    found = []
    for output in cell["outputs"]:
        kind = output["output_type"]
        if kind == "stream":
            found.append((kind, output["name"], output["text"]))
        elif kind == "execute_result":
            found.append((kind, output["data"]["text/plain"]))
        elif kind == "display_data":
            found.append((kind, "image/png" in output["data"]))
        elif kind == "error":
            found.append((kind, output["ename"], output["evalue"]))
    return found


async def test_export_opens_in_nbformat_and_reruns_the_same(running, client, thread_id):
    thread = client.thread(thread_id)
    results = [await thread.run(code) for code in CELLS]
    assert [r.state for r in results] == ["complete"] * 4 + ["error"]
    plot = results[2].files[0]

    status, body, headers = await get(running.http, f"/threads/{thread_id}/notebook",
                                      "tok-alice")
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-ipynb+json"
    assert f'filename="{thread_id}.ipynb"' in headers["Content-Disposition"]
    notebook = nbformat.reads(body.decode(), as_version=4)
    nbformat.validate(notebook)
    assert ["".join(c["source"]) for c in notebook.cells] == CELLS
    assert [c["execution_count"] for c in notebook.cells] == [r.status["execution_count"]
                                                              for r in results]
    image = notebook.cells[2]["outputs"][0]["data"]["image/png"]
    stored = running.gateway.store.get(plot["file_id"], "alice")
    assert base64.b64decode(image) == running.gateway.store.read(stored), "the stored plot"
    assert comparable(notebook.cells[0]) == [("stream", "stdout", "sum 45\n")]
    assert comparable(notebook.cells[4])[0] == ("error", "ZeroDivisionError",
                                                "division by zero")

    rerun = nbformat.reads(body.decode(), as_version=4)
    for cell in rerun.cells:
        cell.outputs = []
    await NotebookClient(rerun, kernel_name="python3", allow_errors=True,
                         timeout=120).async_execute()
    assert [comparable(c) for c in rerun.cells] == [comparable(c) for c in notebook.cells]


async def test_notebook_is_the_owners_only(running, client, thread_id):
    await client.thread(thread_id).run("print('private')")
    assert (await get(running.http, f"/threads/{thread_id}/notebook", "tok-bob"))[0] == 404
    assert (await get(running.http, f"/threads/{thread_id}/notebook", None))[0] == 401
    assert (await get(running.http, f"/threads/{thread_id}/notebook", "wrong"))[0] == 401
    assert (await get(running.http, "/threads/never-ran/notebook", "tok-alice"))[0] == 404


async def test_cli_export_writes_the_notebook(running, client, thread_id, tmp_path):
    await client.thread(thread_id).run("print(6 * 7)")
    target = tmp_path / "thread.ipynb"
    env = {**os.environ, "GATEWAY_CLIENT_TOKEN": "tok-alice"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "thread", "export", thread_id,
                         "-o", str(target), "--url", running.http],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    notebook = nbformat.read(target, as_version=4)
    assert notebook.cells[0]["outputs"][0]["text"] == "42\n"
    env["GATEWAY_CLIENT_TOKEN"] = "tok-bob"
    refused = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "thread", "export", thread_id,
                         "-o", str(tmp_path / "bob.ipynb"), "--url", running.http],
        capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 1 and "no notebook" in refused.stderr
    assert not (tmp_path / "bob.ipynb").exists()
