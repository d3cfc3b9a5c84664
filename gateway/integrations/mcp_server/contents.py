"""Gateway results as MCP tool results (pure: no I/O, tested without a server).

A model reads the condensed ``tool_output`` text first; each image the code produced (a plot it
showed or an image it saved) comes as image content so a multimodal model sees it; every other
file comes as a resource link to its download URL, with its mime type. The final state goes in
structured content for programs.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable

from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from gateway.client import Result

from ...threads.files import mime_type_of
from ...wire.tool_output import tool_output

# Image types the common model APIs accept as images.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript",
                        "application/x-python", "application/x-sh", "application/toml",
                        "application/yaml", "application/sql"})


def run_code_result(result: Result, download_url: Callable[[str], str]) -> CallToolResult:
    status = result.status
    state = result.state or "error"
    if result.error is not None:
        text = f"[the gateway refused the call: {result.error['code']}: {result.error['message']}]"
    else:
        text = status.get("tool_output") or tool_output(
            result.output, state, status.get("files", []), status.get("reason"))
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    files = []
    for announced in result.files:
        url = download_url(announced["file_id"])
        mime_type = announced["mime_type"]
        inline = announced.get("base64") or ""
        if mime_type in IMAGE_TYPES and inline:
            content.append(ImageContent(type="image", data=inline, mime_type=mime_type))
        else:
            content.append(ResourceLink(type="resource_link", uri=url, name=announced["filename"],
                                        mime_type=mime_type,
                                        size=len(base64.b64decode(inline)) if inline else None))
        files.append({"filename": announced["filename"], "file_id": announced["file_id"],
                      "mime_type": mime_type, "url": url})
    structured: dict = {"state": state, "execution_count": status.get("execution_count"),
                        "duration_ms": status.get("duration_ms"), "files": files}
    for key in ("error", "reason", "kernel_restarted"):
        if key in status:
            structured[key] = status[key]
    if result.error is not None:
        structured["gateway_error"] = result.error
    return CallToolResult(content=content, structured_content=structured,
                          is_error=state != "complete")


def file_resource(path: str, data: bytes, size: int) -> EmbeddedResource:
    """A file of ``/mnt/data`` as an embedded resource: text when it is text, else a blob."""
    uri = "file:///mnt/data/" + urllib.parse.quote(path)
    mime_type = mime_type_of(path)
    meta = {"size": size, "truncated": size > len(data)}
    if mime_type.startswith("text/") or mime_type in TEXT_TYPES:
        try:
            text = data.decode()
        except UnicodeDecodeError:  # cut mid-character by the cap, or not really text
            text = None
        if text is not None:
            return EmbeddedResource(type="resource", resource=TextResourceContents(
                uri=uri, mime_type=mime_type, text=text, _meta=meta))
    return EmbeddedResource(type="resource", resource=BlobResourceContents(
        uri=uri, mime_type=mime_type, blob=base64.b64encode(data).decode(), _meta=meta))
