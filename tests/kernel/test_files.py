"""Files: generated files reach the user, uploads reach the code, the store keeps them."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest

from support.gateways import start_gateway, stop_gateway, test_settings
from support.http import download

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def by_name(result) -> dict[str, dict]:
    return {f["filename"]: f for f in result.files}


async def test_docx_report_is_announced_and_valid(client, thread_id):
    import docx

    result = await client.thread(thread_id).run(
        "from docx import Document\n"
        "d = Document()\nd.add_heading('Sales report', 0)\nd.add_paragraph('All good.')\n"
        "d.save('report.docx')")
    assert result.state == "complete"
    report = by_name(result)["report.docx"]
    assert report["mime_type"] == DOCX
    document = docx.Document(io.BytesIO(base64.b64decode(report["base64"])))
    assert [p.text for p in document.paragraphs] == ["Sales report", "All good."]
    assert result.status["files"] == ["report.docx"]
    assert "report.docx" in result.status["tool_output"]


async def test_csv_and_xlsx_in_subdirectory(client, thread_id):
    import openpyxl

    result = await client.thread(thread_id).run(
        "import os, pandas as pd\nos.makedirs('out', exist_ok=True)\n"
        "df = pd.DataFrame({'region': ['n', 's'], 'revenue': [1, 2]})\n"
        "df.to_csv('out/table.csv', index=False)\ndf.to_excel('out/table.xlsx', index=False)\n"
        "open('.hidden', 'w').write('x')\nos.makedirs('__pycache__', exist_ok=True)\n"
        "open('__pycache__/junk.pyc', 'w').write('x')")
    files = by_name(result)
    assert set(files) == {"out/table.csv", "out/table.xlsx"}
    assert files["out/table.csv"]["mime_type"] == "text/csv"
    assert base64.b64decode(files["out/table.csv"]["base64"]) == b"region,revenue\nn,1\ns,2\n"
    assert files["out/table.xlsx"]["mime_type"] == XLSX
    book = openpyxl.load_workbook(io.BytesIO(base64.b64decode(files["out/table.xlsx"]["base64"])))
    assert [[c.value for c in row] for row in book.active.iter_rows()] == [
        ["region", "revenue"], ["n", 1], ["s", 2]]


async def test_changed_file_is_announced_again_with_a_new_id(client, thread_id):
    thread = client.thread(thread_id)
    first = await thread.run("open('notes.txt', 'w').write('v1')")
    unchanged = await thread.run("x = 1")
    second = await thread.run("open('notes.txt', 'w').write('version 2')")
    assert unchanged.files == []
    a, b = by_name(first)["notes.txt"], by_name(second)["notes.txt"]
    assert a["file_id"] != b["file_id"]
    assert base64.b64decode(b["base64"]) == b"version 2"


async def test_upload_is_readable_by_pandas(client, thread_id):
    thread = client.thread(thread_id)
    csv = b"city,sales\nParis,10\nOslo,32\n"
    confirmation = await thread.upload("data/sales.csv", csv)
    assert confirmation["type"] == "file_uploaded"
    assert confirmation["content"] == {"filename": "data/sales.csv", "size": len(csv),
                                       "path": "/mnt/data/data/sales.csv"}
    result = await thread.run(
        "import pandas as pd\nprint(pd.read_csv('data/sales.csv').sales.sum())")
    assert result.output == "42\n"
    assert result.files == [], "an uploaded file is not announced as generated"


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b", "nul\x00.txt",
                                  ".bashrc", "x" * 300, "dir\\file"])
async def test_upload_refuses_unsafe_names(client, thread_id, name):
    thread = client.thread(thread_id)
    reply = await thread.upload(name, b"data")
    assert reply["type"] == "error"
    assert reply["content"]["code"] in {"bad_filename", "bad_request"}


async def test_upload_cannot_follow_a_symlink_out(client, running, thread_id):
    thread = client.thread(thread_id)
    await thread.run("import os\nos.symlink('/etc', 'link')")
    reply = await thread.upload("link/evil.txt", b"data")
    assert reply["type"] == "error" and reply["content"]["code"] == "bad_filename"


async def test_download_returns_identical_bytes_only_to_the_owner(client, running, thread_id):
    result = await client.thread(thread_id).run(
        "import os\nopen('blob.bin', 'wb').write(os.urandom(300_000))")
    blob = by_name(result)["blob.bin"]
    data = base64.b64decode(blob["base64"])
    status, body, headers = await download(running.http, blob["file_id"])
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert headers["Content-Disposition"].startswith('attachment; filename="blob.bin"')
    other_status, other_body, _ = await download(running.http, blob["file_id"], "tok-bob")
    unknown_status, unknown_body, _ = await download(running.http, "file_" + "0" * 32)
    assert other_status == unknown_status == 404
    assert other_body == unknown_body, "a foreign id must look exactly like an unknown one"
    assert (await download(running.http, blob["file_id"], "nope"))[0] == 401


async def test_files_survive_kernel_death(client, running, thread_id):
    thread = client.thread(thread_id)
    made = await thread.run("open('keep.txt', 'w').write('kept')")
    file_id = by_name(made)["keep.txt"]["file_id"]
    died = await thread.run("import os\nos._exit(1)")
    assert died.state == "killed"
    status, body, _ = await download(running.http, file_id)
    assert (status, body) == (200, b"kept")
    again = await thread.run("print(open('keep.txt').read())")
    assert again.output == "kept\n", "the working directory outlives its kernel"


async def test_large_files_are_announced_without_inline_bytes(data_root):
    running = await start_gateway(test_settings(data_root / "large", pool_size=1,
                                                inline_file_limit=1000,
                                                thread_file_quota=3_000_000))
    try:
        async with await running.client() as client:
            thread = client.thread("large")
            result = await thread.run("open('big.txt', 'w').write('y' * 5000)")
            big = by_name(result)["big.txt"]
            assert big["base64"] == "" and big["mime_type"] == "text/plain"
            status, body, _ = await download(running.http, big["file_id"])
            assert (status, body) == (200, b"y" * 5000)
            over = await thread.run("open('huge.bin', 'wb').write(b'z' * 3_500_000)")
            assert "huge.bin" not in by_name(over)
            assert "not saved" in over.output and "quota" in over.output
    finally:
        await stop_gateway(running)
    # The store survives a gateway restart on the same data directory.
    again = await start_gateway(test_settings(data_root / "large", pool_size=1))
    try:
        status, body, _ = await download(again.http, big["file_id"])
        assert (status, body) == (200, b"y" * 5000)
    finally:
        await stop_gateway(again)


async def test_large_upload_in_parts(client, thread_id):
    import os

    data = os.urandom(3 * 2**20 + 123)
    thread = client.thread(thread_id)
    done = await thread.upload("big/input.bin", data, part_size=2**20)
    assert done["type"] == "file_uploaded"
    assert done["content"]["size"] == len(data)
    digest = hashlib.sha256(data).hexdigest()
    result = await thread.run(
        "import hashlib, os\nprint(hashlib.sha256(open('big/input.bin','rb').read()).hexdigest())"
        "\nprint([n for n in os.listdir('.') if n.startswith('.upload')])")
    assert result.output == f"{digest}\n[]\n"


async def test_upload_part_out_of_order_is_refused(client, thread_id):
    await client.send({"type": "upload", "thread_id": thread_id, "call_id": "up1",
                       "filename": "x.bin", "base64": "AAAA", "offset": 10, "final": True})
    reply = await client.next_envelope(thread_id, "up1", timeout=60)
    assert reply["chunk"]["content"]["code"] == "bad_offset"
    await client.send({"type": "upload", "thread_id": thread_id, "filename": "x.bin",
                       "base64": "AAAA", "final": False})
    reply = await client.next_envelope(thread_id, None, timeout=60)
    assert reply["chunk"]["content"]["code"] == "bad_request"


async def test_generated_symlinks_and_fifos_are_not_followed(client, thread_id):
    """The gateway runs as root: a link the code plants must never make it read host files."""
    result = await client.thread(thread_id).run(
        "import os\nos.symlink('/etc/hostname', 'host.txt')\nos.mkfifo('pipe')\n"
        "os.makedirs('d')\nopen('d/real.txt', 'w').write('real')")
    assert [f["filename"] for f in result.files] == ["d/real.txt"]


async def test_upload_into_a_symlinked_directory_is_refused(client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("import os\nos.symlink('/tmp', 'outside')")
    reply = await thread.upload("outside/x.txt", b"x")
    assert reply["type"] == "error" and reply["content"]["code"] == "bad_filename"
    reply = await thread.upload("inside/deeper/x.txt", b"ok")
    assert reply["type"] == "file_uploaded"
    check = await thread.run("print(open('inside/deeper/x.txt').read())")
    assert check.output == "ok\n"
