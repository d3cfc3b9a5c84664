"""HTTP PUT uploads, also on the old upload port (an alias of the main one, opened only when
asked for): streamed into the thread's directory, refused cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os

import pytest

from gateway.client import UploadError

pytestmark = pytest.mark.asyncio(loop_scope="session")


def put(port: int, path: str, body: bytes = b"", token: str | None = "tok-alice",
        method: str = "PUT", headers: dict | None = None) -> tuple[int, dict]:
    """A raw request (blocking): status and parsed JSON body."""
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        sent = {"Content-Length": str(len(body)), **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


async def test_large_file_streams_into_the_working_directory(client, thread_id, tmp_path):
    # Larger than one 8 MiB part, so it is written in several parts and renamed at the end.
    data = os.urandom(20 * 2**20 + 12345)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    thread = client.thread(thread_id)
    assert (await thread.run("1")).state == "complete"  # the connection now listens

    result = await asyncio.to_thread(client.upload_http, thread_id, "in/big.bin", source,
                                     "call_up1")
    assert result == {"filename": "in/big.bin", "size": len(data),
                      "path": "/mnt/data/in/big.bin"}
    announced = await client.next_envelope(thread_id, "call_up1", timeout=30)
    assert announced["chunk"] == {"type": "file_uploaded", "content": result}

    check = await thread.run("import hashlib, os\n"
                             "print(hashlib.sha256(open('in/big.bin','rb').read()).hexdigest())\n"
                             "print(sorted(n for n in os.listdir('.') if n.startswith('.')))")
    assert check.output.split("\n")[0] == hashlib.sha256(data).hexdigest()
    assert check.output.split("\n")[1] == "[]", "no partial upload file may remain"


async def test_uploaded_csv_is_read_by_pandas(client, thread_id):
    csv = b"city,sales\nOslo,3\nLima,4\n"
    await asyncio.to_thread(client.upload_http, thread_id, "sales.csv", csv)
    result = await client.thread(thread_id).run(
        "import pandas as pd\nprint(pd.read_csv('sales.csv').sales.sum())")
    assert result.output == "7\n"


async def test_refusals_have_clear_statuses(running, client, thread_id):
    port = running.server.port
    await client.thread(thread_id).run("1")
    base = f"/threads/{thread_id}/files"
    cases = [
        (dict(path=f"{base}/a.txt", body=b"x", token=None), 401, "unauthorized"),
        (dict(path=f"{base}/a.txt", body=b"x", token="wrong"), 401, "unauthorized"),
        (dict(path=f"{base}/..%2F..%2Fetc%2Fpasswd", body=b"x"), 400, "bad_filename"),
        (dict(path=f"{base}/%2Fabs", body=b"x"), 400, "bad_filename"),
        (dict(path=f"{base}/nul%00.txt", body=b"x"), 400, "bad_filename"),
        (dict(path=f"{base}/%FF%FE.txt", body=b"x"), 400, "bad_filename"),
        (dict(path="/threads/..%2Fx/files/a.txt", body=b"x"), 400, "bad_request"),
        (dict(path="/upload", body=b"x"), 404, "not_found"),
        (dict(path=f"{base}/a.txt", method="GET"), 405, "method_not_allowed"),
        # Refused from the header alone: the body is never read.
        (dict(path=f"{base}/huge.bin", headers={"Content-Length": str(2**40)}), 413,
         "too_large"),
    ]
    for kwargs, status, code in cases:
        got_status, body = await asyncio.to_thread(put, port, **kwargs)
        assert (got_status, body["error"]["code"]) == (status, code), kwargs
    # Another identity's PUT to the same id lands in a thread of its own, never in alice's.
    status, body = await asyncio.to_thread(put, port, f"{base}/bob.txt", b"bob", "tok-bob")
    assert status == 201, body
    await running.gateway.close_thread(thread_id, "bob")
    listing = await client.thread(thread_id).run("import os; print(sorted(os.listdir('.')))")
    assert listing.output == "[]\n", "nothing refused may land in the working directory"


async def test_client_raises_upload_error(client, thread_id):
    await client.thread(thread_id).run("1")
    with pytest.raises(UploadError) as info:
        await asyncio.to_thread(client.upload_http, thread_id, "../escape.txt", b"x")
    assert info.value.status == 400 and info.value.code == "bad_filename"


async def test_chunked_body_is_accepted(running, client, thread_id):
    def send_chunked() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", running.server.port,
                                                timeout=60)
        try:
            connection.request("PUT", f"/threads/{thread_id}/files/parts.txt",
                               body=iter([b"alpha ", b"beta ", b"gamma"]),
                               headers={"Authorization": "Bearer tok-alice"},
                               encode_chunked=True)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    status, body = await asyncio.to_thread(send_chunked)
    assert status == 201, body
    result = await client.thread(thread_id).run("print(open('parts.txt').read())")
    assert result.output == "alpha beta gamma\n"
