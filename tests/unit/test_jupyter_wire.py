"""Jupyter's kernel gateway API, the pure half: ids, kernelspecs, start requests, frames and
the messages the gateway writes itself."""

from __future__ import annotations

import struct

import orjson
import pytest

from gateway.errors import ProtocolError
from gateway.wire import jupyter
from gateway.wire.jupyter import CellEnd, JupyterError

REQUEST = {"header": {"msg_id": "m1", "msg_type": "execute_request", "session": "s1",
                      "username": "u", "date": "2026-01-01T00:00:00Z", "version": "5.3"},
           "parent_header": {}, "metadata": {}, "content": {"code": "1+1"}}


def test_kernel_ids_are_uuid_shaped_stable_and_per_identity():
    alice = jupyter.kernel_id("alice/t1")
    assert alice == jupyter.kernel_id("alice/t1")
    assert alice != jupyter.kernel_id("bob/t1")
    assert [len(part) for part in alice.split("-")] == [8, 4, 4, 4, 12]


def test_kernelspecs_name_python_python3_and_list_only_available_languages():
    specs = jupyter.kernelspecs(["python", "bash"])
    assert specs["default"] == "python3"
    assert set(specs["kernelspecs"]) == {"python3", "bash"}
    assert specs["kernelspecs"]["python3"]["spec"]["language"] == "python"
    assert jupyter.language_of_spec("python3").name == "python"
    with pytest.raises(JupyterError) as err:
        jupyter.language_of_spec("julia-1.9")
    assert err.value.status == 404 and "python3" in str(err.value)


def start(body: dict | bytes):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return jupyter.start_request(raw, lambda tid: jupyter.kernel_id(f"alice/{tid}"))


def test_start_request_accepts_what_jupyter_server_sends_and_a_thread_to_attach_to():
    request = start({"name": "python3", "env": {"KERNEL_LAUNCH_TIMEOUT": "40",
                                                "KERNEL_USERNAME": "x",
                                                "KERNEL_WORKING_DIR": "/home/x"}})
    assert request.language.name == "python" and request.thread_id is None
    assert start(b"").language.name == "python"  # no body: the default kernel
    attached = start({"name": "bash", "env": {"KERNEL_THREAD_ID": "t9",
                                              "KERNEL_ID": jupyter.kernel_id("alice/t9")}})
    assert (attached.language.name, attached.thread_id) == ("bash", "t9")


@pytest.mark.parametrize("body, words", [
    ({"name": "nope"}, "no such kernel"),
    ({"env": {"KERNEL_MEMORY": "8G", "KERNEL_UID": "0"}}, "KERNEL_MEMORY, KERNEL_UID"),
    ({"env": {"PATH": "/tmp"}}, "not supported: PATH"),
    ({"env": {"KERNEL_ID": "0000"}}, "KERNEL_ID cannot be chosen"),
    ({"env": {"KERNEL_ID": "0000", "KERNEL_THREAD_ID": "t"}}, "does not match"),
    ({"env": "x"}, "env must be"),
    (b"[1]", "JSON object"),
    (b"{", "not JSON"),
])
def test_start_request_refuses_the_rest_clearly(body, words):
    with pytest.raises(JupyterError, match=words):
        start(body)


@pytest.mark.parametrize("protocol", [None, jupyter.V1_SUBPROTOCOL])
@pytest.mark.parametrize("buffers", [[], [b"\x00\x01", b"xyz"]])
def test_frames_round_trip_in_both_protocols(protocol, buffers):
    message = {**REQUEST, "buffers": buffers}
    frame = jupyter.encode_frame("shell", message, protocol)
    assert isinstance(frame, bytes) == (protocol is not None or bool(buffers))
    channel, decoded = jupyter.decode_frame(frame, protocol)
    assert channel == "shell"
    assert decoded["header"] == REQUEST["header"]
    assert decoded["content"] == {"code": "1+1"}
    assert decoded["buffers"] == buffers


def test_legacy_text_frames_carry_channel_msg_id_and_type():
    frame = orjson.loads(jupyter.encode_frame("iopub", REQUEST, None))
    assert (frame["channel"], frame["msg_id"], frame["msg_type"]) == (
        "iopub", "m1", "execute_request")


@pytest.mark.parametrize("frame, protocol", [
    ("not json", None),
    ("[]", None),
    ('{"header": {"msg_type": "x"}, "channel": "shell"}', None),  # no msg_id
    (orjson.dumps({**REQUEST, "channel": "iopub"}).decode(), None),  # clients do not write it
    (orjson.dumps({**REQUEST, "content": [1]}).decode() , None),
    (b"\x00\x00\x00\x09garbage", None),
    (struct.pack("!II", 1, 999), None),
    (b"\x07" + b"\x00" * 7, jupyter.V1_SUBPROTOCOL),
    ((2**40).to_bytes(8, "little") + b"x" * 64, jupyter.V1_SUBPROTOCOL),
    ("{}", jupyter.V1_SUBPROTOCOL),  # v1 is binary
])
def test_malformed_frames_are_protocol_errors(frame, protocol):
    with pytest.raises(ProtocolError):
        jupyter.decode_frame(frame, protocol)


def test_a_cell_the_kernel_ran_gets_only_its_reply():
    out = jupyter.cell_end_messages(REQUEST, CellEnd("complete", 3), 0.0)
    assert [(c, m["header"]["msg_type"]) for c, m in out] == [("shell", "execute_reply")]
    reply = out[0][1]
    assert reply["parent_header"]["msg_id"] == "m1"
    assert reply["header"]["session"] == "s1"
    assert reply["content"]["status"] == "ok" and reply["content"]["execution_count"] == 3


def test_an_error_reply_names_the_kernels_error():
    end = CellEnd("error", 4, "ZeroDivisionError", "division by zero", ("line",))
    content = jupyter.cell_end_messages(REQUEST, end, 0.0)[0][1]["content"]
    assert (content["status"], content["ename"], content["traceback"]) == (
        "error", "ZeroDivisionError", ["line"])


def test_a_refused_cell_still_gets_busy_error_reply_and_idle():
    out = jupyter.cell_end_messages(
        REQUEST, CellEnd("refused", reason="queue full", idle_sent=False), 0.0)
    kinds = [(c, m["header"]["msg_type"]) for c, m in out]
    assert kinds == [("iopub", "status"), ("iopub", "error"), ("shell", "execute_reply"),
                     ("iopub", "status")]
    assert out[-1][1]["content"] == {"execution_state": "idle"}
    assert out[1][1]["content"]["evalue"] == "queue full"


def test_a_timed_out_cell_is_an_error_even_without_a_traceback():
    content = jupyter.cell_end_messages(REQUEST, CellEnd("timeout", 1, reason="timed out"),
                                        0.0)[0][1]["content"]
    assert (content["status"], content["ename"]) == ("error", "TimeoutError")


def test_kernel_info_for_a_sleeping_thread_says_python():
    info = jupyter.kernel_info(jupyter.language_of_spec("python3"))
    assert info["language_info"]["name"] == "python"
    assert info["protocol_version"].startswith("5.")


def test_models_carry_what_jupyter_server_reads():
    model = jupyter.kernel_model("alice/t1", "python", 0.0, "idle", 2)
    assert model["id"] == jupyter.kernel_id("alice/t1")
    assert model["name"] == "python3"
    assert model["last_activity"] == "1970-01-01T00:00:00.000000Z"
    assert (model["execution_state"], model["connections"]) == ("idle", 2)


@pytest.mark.parametrize("msg_type, channel", [
    ("execute_request", "shell"), ("input_reply", "stdin"), ("interrupt_request", "control")])
def test_a_message_without_channel_goes_where_jupyter_server_would_send_it(msg_type, channel):
    frame = {**REQUEST, "header": {**REQUEST["header"], "msg_type": msg_type}}
    assert jupyter.decode_frame(orjson.dumps(frame).decode(), None)[0] == channel
