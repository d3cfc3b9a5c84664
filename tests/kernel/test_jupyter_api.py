"""Jupyter's kernel gateway API on the gateway's port: REST, the channels websocket in both
protocols, and a Jupyter client on the model's own thread."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from gateway.net import jupyter_channels
from gateway.wire import jupyter
from support.gateways import thread_key
from support.jupyter import GUARD, Channels, message, rest, results, stream_text

pytestmark = pytest.mark.kernel


def channels_url(running, kernel_id: str) -> str:
    return f"ws://127.0.0.1:{running.server.port}/api/kernels/{kernel_id}/channels"


async def test_rest_kernelspecs_start_and_refusals(running):
    status, specs = await rest(running.http, "GET", "/api/kernelspecs")
    assert status == 200 and specs["default"] == "python3"
    assert specs["kernelspecs"]["python3"]["spec"]["language"] == "python"
    assert (await rest(running.http, "GET", "/api/kernelspecs", token=None))[0] == 401
    assert (await rest(running.http, "GET", "/api/kernelspecs", token="nope"))[0] == 401
    status, body = await rest(running.http, "POST", "/api/kernels", body={"name": "julia"})
    assert status == 404 and "python3" in body["message"]
    status, body = await rest(running.http, "POST", "/api/kernels",
                              body={"name": "python3", "env": {"KERNEL_MEMORY": "64G"}})
    assert status == 400 and "KERNEL_MEMORY" in body["message"]

    status, model = await rest(running.http, "POST", "/api/kernels", body={
        "name": "python3", "env": {"KERNEL_LAUNCH_TIMEOUT": "40", "KERNEL_USERNAME": "x"}})
    assert status == 201 and model["name"] == "python3"
    kid = model["id"]
    try:
        listed = (await rest(running.http, "GET", "/api/kernels"))[1]
        assert kid in [k["id"] for k in listed]
        assert (await rest(running.http, "GET", f"/api/kernels/{kid}"))[1]["id"] == kid
        # Another identity's kernel is as unknown as a made-up one, for every verb.
        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/interrupt"),
                             ("POST", "/restart")):
            assert (await rest(running.http, method, f"/api/kernels/{kid}{path}",
                               token="tok-bob"))[0] == 404
        assert kid not in [k["id"] for k in (await rest(running.http, "GET", "/api/kernels",
                                                        token="tok-bob"))[1]]
        with pytest.raises(InvalidStatus) as refused:
            await Channels.open(channels_url(running, kid), token="tok-bob")
        assert refused.value.response.status_code == 404
        assert (await rest(running.http, "POST", f"/api/kernels/{kid}/interrupt"))[0] == 204
        assert (await rest(running.http, "POST", f"/api/kernels/{kid}/restart"))[0] == 200
    finally:
        assert (await rest(running.http, "DELETE", f"/api/kernels/{kid}"))[0] == 204
    assert (await rest(running.http, "GET", f"/api/kernels/{kid}"))[0] == 404


async def test_a_person_opens_the_models_thread(running, client, thread_id):
    thread = client.thread(thread_id)
    assert (await thread.run("data = [1, 2, 3]")).state == "complete"
    kid = jupyter.kernel_id(thread_key(thread_id))
    listed = {k["id"]: k for k in (await rest(running.http, "GET", "/api/kernels"))[1]}
    assert listed[kid]["name"] == "python3"

    channels = await Channels.open(channels_url(running, kid))
    try:
        info = await channels.request("shell", message("kernel_info_request"),
                                      "kernel_info_reply")
        assert info["content"]["language_info"]["name"] == "python"
        assert (await rest(running.http, "GET", f"/api/kernels/{kid}"))[1]["connections"] == 1

        reply, iopub = await channels.execute("data.append(4)\nsum(data)")
        assert reply["content"]["status"] == "ok"
        assert results(iopub) == ["10"]
        states = [m["content"]["execution_state"] for m in iopub
                  if m["header"]["msg_type"] == "status"]
        assert states[0] == "busy" and states[-1] == "idle"
        # The model's next call sees what the person did, and the model's cells reach the
        # person's channel too (iopub is the kernel's, for everyone watching).
        seen = len(channels.received)
        assert "[1, 2, 3, 4]" in (await thread.run("print(data)")).output
        await channels.until(lambda c, m: m["header"]["msg_type"] == "stream"
                             and "[1, 2, 3, 4]" in m["content"]["text"]
                             and (c, m) not in channels.received[:seen])

        complete = await channels.request("shell", message(
            "complete_request", {"code": "dat", "cursor_pos": 3}), "complete_reply")
        assert "data" in complete["content"]["matches"]
        inspect = await channels.request("shell", message(
            "inspect_request", {"code": "data", "cursor_pos": 4, "detail_level": 0}),
            "inspect_reply")
        assert inspect["content"]["found"]
        comms = await channels.request("shell", message("comm_info_request", {}),
                                       "comm_info_reply")
        assert comms["content"]["status"] == "ok"

        error_reply, error_iopub = await channels.execute("1 / 0")
        assert error_reply["content"]["ename"] == "ZeroDivisionError"
        assert any(m["header"]["msg_type"] == "error" for m in error_iopub)
    finally:
        await channels.close()


async def test_stdin_and_interrupts(running, thread_id):
    status, model = await rest(running.http, "POST", "/api/kernels",
                               body={"env": {"KERNEL_THREAD_ID": thread_id}})
    assert status == 201
    # An id of its own for this start (another start may be shut down without this one).
    assert model["id"] != jupyter.kernel_id(thread_key(thread_id))
    assert (await rest(running.http, "GET", f"/api/kernels/{model['id']}"))[0] == 200
    channels = await Channels.open(channels_url(running, model["id"]))
    try:
        request = message("execute_request", {"code": "name = input('who? ')\nname.upper()",
                                              "silent": False, "store_history": True,
                                              "user_expressions": {}, "allow_stdin": True})
        await channels.send("shell", request)
        await channels.until(lambda c, m: c == "stdin"
                             and m["header"]["msg_type"] == "input_request")
        asked = next(m for c, m in channels.received if c == "stdin")
        assert asked["content"]["prompt"] == "who? "
        answer = message("input_reply", {"value": "ada"})
        answer["parent_header"] = asked["header"]
        await channels.send("stdin", answer)
        await channels.until(lambda c, m: m["header"]["msg_type"] == "execute_reply"
                             and m["parent_header"]["msg_id"] == request["header"]["msg_id"])
        assert results([m for c, m in channels.of(request) if c == "iopub"]) == ["'ADA'"]

        sleeper = message("execute_request", {"code": "import time\ntime.sleep(60)",
                                              "silent": False, "store_history": True})
        await channels.send("shell", sleeper)
        await channels.until(lambda c, m: m["header"]["msg_type"] == "execute_input"
                             and m["parent_header"]["msg_id"] == sleeper["header"]["msg_id"])
        await channels.request("control", message("interrupt_request"), "interrupt_reply")
        await channels.until(lambda c, m: m["header"]["msg_type"] == "execute_reply"
                             and m["parent_header"]["msg_id"] == sleeper["header"]["msg_id"])
        reply = next(m for c, m in channels.of(sleeper) if c == "shell")
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        await channels.close()


async def test_v1_protocol_malformed_frames_and_a_hibernated_thread(running, thread_id):
    status, model = await rest(running.http, "POST", "/api/kernels",
                               body={"name": "python3",
                                     "env": {"KERNEL_THREAD_ID": thread_id}})
    kid = model["id"]
    channels = await Channels.open(channels_url(running, kid),
                                   protocol=jupyter.V1_SUBPROTOCOL)
    try:
        assert channels.ws.subprotocol == jupyter.V1_SUBPROTOCOL
        _, iopub = await channels.execute("x = 41\nx + 1")
        assert results(iopub) == ["42"]
        for garbage in (b"\x00" * 3, b"\xff" * 64, "text is not v1",
                        jupyter.encode_frame("iopub", message("execute_request"),
                                             jupyter.V1_SUBPROTOCOL)):
            await channels.ws.send(garbage)

        session = running.gateway.threads[thread_key(thread_id)]
        assert await session.hibernate("idle", wait=True)
        assert session.kernel is None
        # Opening a notebook asks kernel_info: answered without waking the thread.
        info = await channels.request("shell", message("kernel_info_request"),
                                      "kernel_info_reply")
        assert info["content"]["language_info"]["name"] == "python"
        assert session.kernel is None and session.hibernated is not None
        # Its next cell restores it, variables included, and its output reaches this channel
        # from the new kernel.
        reply, iopub = await channels.execute("print('back', x)")
        assert reply["content"]["status"] == "ok"
        assert stream_text(iopub) == "back 41\n"
        assert session.kernel is not None
    finally:
        await channels.close()


async def test_a_client_that_never_reads_is_cut_off(running, thread_id, monkeypatch):
    monkeypatch.setattr(jupyter_channels, "OUTBOUND_BUFFER_BYTES", 2 * 2**20)
    status, model = await rest(running.http, "POST", "/api/kernels",
                               body={"env": {"KERNEL_THREAD_ID": thread_id}})
    kernels = running.server.http.jupyter
    key = thread_key(thread_id)
    reader = await Channels.open(channels_url(running, model["id"]))
    stalled = await Channels.open(channels_url(running, model["id"]))
    stalled._reader.cancel()  # reads nothing from here on
    try:
        assert kernels.connections[key] == 2
        _, iopub = await reader.execute(
            "for _ in range(300):\n    print('x' * 100_000, flush=True)")
        assert len(stream_text(iopub)) > 30 * 10**6  # the reading client got all of it

        async def stalled_dropped() -> None:
            while kernels.connections.get(key) != 1:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(stalled_dropped(), GUARD)
        _, iopub = await reader.execute("'still here'")
        assert results(iopub) == ["'still here'"]
    finally:
        await reader.close()
        await stalled.ws.close()
