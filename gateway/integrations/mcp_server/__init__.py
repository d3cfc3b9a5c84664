"""The gateway as a Model Context Protocol server (``gateway mcp``), on the official ``mcp`` SDK.

One MCP session is one stateful gateway thread. The tools run code, move files in and out of
``/mnt/data`` and restart the kernel; results come back as MCP content (text, images, resource
links with download URLs) plus the final state as structured content.
"""
