"""The MCP tools: run_code, upload_file, list_files, read_file, restart.

Descriptions are written for the model that calls them: what persists, where files live, what
the limits are. Each MCP session gets its own gateway thread (a kernel of its own), made on its
first tool call.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from gateway import __version__
from gateway.client import Thread

from . import file_cells
from .backend import GatewayBackend
from .bearer import GatewayTokenVerifier
from .contents import file_resource, run_code_result

READ_FILE_LIMIT = 256 * 1024  # bytes a read_file returns at most (it travels as base64 text)

INSTRUCTIONS = """\
A sandboxed Python interpreter (a Jupyter kernel) that keeps its state for this whole session:
variables, imports and files from one run_code call are there in the next. The working
directory is /mnt/data: files uploaded with upload_file appear there, and files your code writes
there (plots, .csv, .xlsx, .docx, .pdf, ...) are returned as downloadable links. The sandbox has
no network access; common data-analysis packages (pandas, numpy, matplotlib, scipy,
scikit-learn, ...) are installed and pip cannot add more."""

RUN_CODE = """\
Run Python code in this session's stateful Jupyter kernel and return its output.

State persists between calls: define a variable or import a module once and use it later. The
working directory is /mnt/data; read uploaded files by name (pd.read_csv("sales.csv")) and save
results there. The result holds the printed output, the value of the last expression and any
traceback (long output is shortened, keeping its start and end); each plot shown with
plt.show() or saved as an image comes back as an image; other files written to /mnt/data come
back as links (with their download URL). No network access. A cell that runs longer than
`timeout` seconds (default: the gateway's, usually 60) is interrupted; the kernel keeps its
state unless it had to be restarted, which the result says."""

UPLOAD_FILE = """\
Put a file into /mnt/data so code can open it by name. Give `filename` (a relative path such as
"sales.csv" or "data/2024.json") and the content: `text` for text files, `content_base64` for
binary files, or `local_path` for a file on the machine running this MCP server (only when the
server allows it). An existing file of that name is replaced."""

LIST_FILES = """\
List the files in /mnt/data (uploads and files written by code), with sizes in bytes and
modification times. Hidden files are left out."""

READ_FILE = """\
Return the content of a file in /mnt/data (path relative to /mnt/data) as an embedded
resource: text files as text, other files as base64. At most `max_bytes` bytes are returned
(default and maximum 262144); the result says when the file was cut. For large files, read
what you need with run_code instead, or use the download link run_code gave for it."""

RESTART = """\
Restart the kernel: all variables and imports are lost, files in /mnt/data are kept. Use it
when the kernel is stuck or its state is broken."""


def build_server(backend: GatewayBackend, *, token: str | None = None,
                 allow_local_paths: bool = False, http_url: str | None = None) -> MCPServer:
    """The MCP server. ``token``: the gateway token for a transport without authentication
    (stdio). ``http_url``: the server's own Streamable HTTP URL; then every request must carry
    a bearer token the gateway accepts, and that token is used for the request."""
    auth: dict[str, Any] = {}
    if http_url:
        # Gateway tokens are not OAuth tokens bound to a resource: the gateway is the check.
        # pydantic validates the str into an AnyHttpUrl (mypy sees only the field types).
        auth = {"auth": AuthSettings(issuer_url=http_url, resource_server_url=http_url,  # type: ignore[arg-type]
                                     validate_token_resource=False),
                "token_verifier": GatewayTokenVerifier(backend)}
    server = MCPServer("code-interpreter-gateway", instructions=INSTRUCTIONS,
                       version=__version__, **auth)

    async def thread_of(ctx: Context) -> Thread:
        access = get_access_token()
        presented = access.token if access is not None else token
        if not presented:
            raise PermissionError("no gateway token for this session")
        return await backend.thread_for(presented, _session_key(ctx))

    @server.tool(description=RUN_CODE, annotations=ToolAnnotations(
        title="Run Python", destructive_hint=False, open_world_hint=False))
    async def run_code(
        code: Annotated[str, Field(description="Python source to execute.")],
        ctx: Context,
        timeout: Annotated[float | None, Field(
            description="Seconds before the cell is interrupted (default: the gateway's).",
            gt=0)] = None,
    ) -> CallToolResult:
        thread = await thread_of(ctx)
        result = await thread.run(code, timeout=timeout, wait=None)
        return run_code_result(result, backend.download_url)

    @server.tool(description=UPLOAD_FILE, annotations=ToolAnnotations(
        title="Upload a file", destructive_hint=True, idempotent_hint=True,
        open_world_hint=False))
    async def upload_file(
        filename: Annotated[str, Field(description="Relative path under /mnt/data.")],
        ctx: Context,
        text: Annotated[str | None, Field(description="Content of a text file.")] = None,
        content_base64: Annotated[str | None, Field(
            description="Content of a binary file, base64-encoded.")] = None,
        local_path: Annotated[str | None, Field(
            description="A file on the MCP server's machine (if allowed).")] = None,
    ) -> CallToolResult:
        data = _upload_data(text, content_base64, local_path, allow_local_paths)
        thread = await thread_of(ctx)
        chunk = await thread.upload(filename, data)
        if chunk["type"] != "file_uploaded":
            error = chunk["content"]
            return _text(f"upload refused: {error.get('code')}: {error.get('message')}",
                         error=True, structured=error)
        info = chunk["content"]
        return _text(f"uploaded {info.get('filename', filename)} ({info.get('size')} bytes) to "
                     f"{info.get('path')}", structured=info)

    @server.tool(description=LIST_FILES, annotations=ToolAnnotations(
        title="List files", read_only_hint=True, open_world_hint=False))
    async def list_files(ctx: Context) -> CallToolResult:
        found = await _helper(await thread_of(ctx), file_cells.LIST_FILES)
        if isinstance(found, CallToolResult):
            return found
        lines = [f"{f['path']}\t{f['size']} bytes" for f in found] or ["(no files)"]
        return _text("\n".join(lines), structured={"files": found})

    @server.tool(description=READ_FILE, annotations=ToolAnnotations(
        title="Read a file", read_only_hint=True, open_world_hint=False))
    async def read_file(
        path: Annotated[str, Field(description="Path relative to /mnt/data.")],
        ctx: Context,
        max_bytes: Annotated[int, Field(description="Return at most this many bytes.", gt=0,
                                        le=READ_FILE_LIMIT)] = READ_FILE_LIMIT,
    ) -> CallToolResult:
        read = await _helper(await thread_of(ctx), file_cells.read_file(path, max_bytes))
        if isinstance(read, CallToolResult):
            return read
        data = base64.b64decode(read["base64"])
        resource = file_resource(path, data, read["size"])
        return CallToolResult(content=[resource], structured_content={
            "path": path, "size": read["size"], "returned_bytes": len(data),
            "truncated": read["size"] > len(data)})

    @server.tool(description=RESTART, annotations=ToolAnnotations(
        title="Restart the kernel", destructive_hint=True, open_world_hint=False))
    async def restart(ctx: Context) -> CallToolResult:
        thread = await thread_of(ctx)
        await thread.restart()
        while True:  # the thread's own envelopes (no call id) until the restart is reported
            envelope = await thread.client.next_envelope(thread.id, None, timeout=300)
            chunk = envelope["chunk"]
            if chunk["type"] == "error":
                return _text(f"restart failed: {chunk['content']['message']}", error=True)
            if chunk["type"] == "status" and chunk["content"].get("state") == "restarted":
                return _text("the kernel was restarted: variables are gone, files in /mnt/data "
                             "are kept", structured={"state": "restarted"})

    return server


def _session_key(ctx: Context) -> str:
    """What one thread belongs to: the ``Mcp-Session-Id`` of a Streamable HTTP session, else
    the process. A stdio server serves one client, so that is its session; a client of the
    sessionless 2026 protocol revision over HTTP gets one thread per token (its token's
    connection is the only thing that stays the same between its requests)."""
    headers = ctx.headers or {}
    return headers.get("mcp-session-id") or "process"


def _upload_data(text: str | None, content_base64: str | None, local_path: str | None,
                 allow_local_paths: bool) -> bytes:
    given = [value is not None for value in (text, content_base64, local_path)]
    if sum(given) != 1:
        raise ValueError("give exactly one of text, content_base64 or local_path")
    if text is not None:
        return text.encode()
    if content_base64 is not None:
        try:
            return base64.b64decode(content_base64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"content_base64 is not valid base64: {exc}") from None
    if not allow_local_paths:
        raise PermissionError("this MCP server does not read local paths; send the content")
    return Path(local_path or "").expanduser().read_bytes()


async def _helper(thread: Thread, code: str) -> Any:
    """Run a helper cell; its JSON, or the failed run as a tool error."""
    result = await thread.run(code, wait=None)
    if result.state == "complete":
        try:
            return file_cells.parse(result.output)
        except ValueError:
            pass
    return _text(result.status.get("tool_output") or result.output or "the helper cell failed",
                 error=True)


def _text(text: str, *, error: bool = False, structured: dict | None = None,
          ) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured, is_error=error)

