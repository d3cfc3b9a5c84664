"""Jupyter's own clients on the gateway: Jupyter Server (``--gateway-url``) driven through its
REST API and kernel websocket as JupyterLab drives it, nbclient through Jupyter Server's
``GatewayKernelManager``, and papermill with parameters."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import nbformat
import pytest
import pytest_asyncio

from gateway.wire import jupyter
from support.jupyter import GUARD, Channels, message, rest, results, stream_text
from support.jupyter_server import SERVER_TOKEN, JupyterServer, jupyter_env

pytestmark = pytest.mark.kernel


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(running, tmp_path_factory):
    server = await JupyterServer.start(tmp_path_factory.mktemp("jupyter-server"),
                                       running.http)
    yield server
    server.stop()


async def test_jupyter_server_runs_cells_on_a_gateway_kernel(running, server):
    status, specs = await rest(server.http, "GET", "/api/kernelspecs", token=SERVER_TOKEN)
    assert status == 200
    assert specs["kernelspecs"]["python3"]["spec"]["display_name"] == \
        "Python (sandboxed gateway)"
    status, model = await rest(server.http, "POST", "/api/kernels", token=SERVER_TOKEN,
                               body={"name": "python3"})
    assert status == 201
    kid = model["id"]
    # The same kernel, as the gateway knows it: one of alice's threads.
    assert kid in [k["id"] for k in (await rest(running.http, "GET", "/api/kernels"))[1]]
    # As JupyterLab does: it offers the v1 protocol; Jupyter Server, which relays to the
    # gateway, keeps to the legacy one.
    channels = await Channels.open(f"{server.ws}/api/kernels/{kid}/channels",
                                   token=SERVER_TOKEN, protocol=jupyter.V1_SUBPROTOCOL)
    try:
        info = await channels.request("shell", message("kernel_info_request"),
                                      "kernel_info_reply")
        assert info["content"]["language_info"]["name"] == "python"
        reply, iopub = await channels.execute("1 + 1")
        assert reply["content"]["status"] == "ok" and results(iopub) == ["2"]
        _, iopub = await channels.execute("import os\nprint(os.getcwd())")
        assert stream_text(iopub) == "/mnt/data\n"  # the thread's sandboxed directory
    finally:
        await channels.close()
    assert (await rest(server.http, "POST", f"/api/kernels/{kid}/interrupt",
                       token=SERVER_TOKEN))[0] == 204
    assert (await rest(server.http, "POST", f"/api/kernels/{kid}/restart",
                       token=SERVER_TOKEN))[0] == 200
    assert (await rest(server.http, "DELETE", f"/api/kernels/{kid}", token=SERVER_TOKEN))[0] \
        == 204
    assert (await rest(running.http, "GET", f"/api/kernels/{kid}"))[0] == 404


def notebook(*cells: str, parameters: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={
            "tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    return nb


async def run_python(script: str, env: dict, cwd) -> None:
    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=GUARD * 2)

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr[-6000:]


NBCLIENT = """
import nbformat
from nbclient import NotebookClient
from jupyter_server.gateway.managers import GatewayKernelManager
nb = nbformat.read("in.ipynb", as_version=4)
NotebookClient(nb, kernel_name="python3", kernel_manager_class=GatewayKernelManager,
               timeout=120, allow_errors=True).execute()
nbformat.write(nb, "out.ipynb")
"""


async def test_nbclient_runs_a_notebook_on_the_models_thread(running, client, thread_id,
                                                             tmp_path):
    thread = client.thread(thread_id)
    assert (await thread.run("secret = 6")).state == "complete"
    nbformat.write(notebook("secret * 7", "print('from', __import__('os').getcwd())",
                            "1 / 0"), tmp_path / "in.ipynb")
    # KERNEL_THREAD_ID (sent like every KERNEL_* variable) attaches to the model's thread.
    await run_python(NBCLIENT, jupyter_env(tmp_path, running.http, KERNEL_THREAD_ID=thread_id),
                     tmp_path)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["data"]["text/plain"] == "42"
    assert out.cells[1].outputs[0]["text"] == "from /mnt/data\n"
    assert out.cells[2].outputs[0]["ename"] == "ZeroDivisionError"
    # nbclient shut its kernel down at the end: a thread it only attached to goes on, and
    # the model sees what the notebook did.
    assert (await thread.run("print(_)")).output == "from /mnt/data\n42\n"[-3:]
    assert (await thread.run("print(_)")).output == "42\n"

PAPERMILL = """
import papermill
papermill.execute_notebook("in.ipynb", "out.ipynb", parameters={"n": 5},
                           kernel_name="python3", progress_bar=False,
                           kernel_manager_class="jupyter_server.gateway.managers.GatewayKernelManager")
"""


async def test_papermill_with_parameters(running, tmp_path):
    nbformat.write(notebook("total = sum(range(n))\ntotal", parameters="n = 1"),
                   tmp_path / "in.ipynb")
    await run_python(PAPERMILL, jupyter_env(tmp_path, running.http), tmp_path)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 5" in injected[0].source
    assert out.cells[-1].outputs[0]["data"]["text/plain"] == "10"
