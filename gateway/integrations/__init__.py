"""Ways into the gateway from the agent ecosystem, each an optional extra.

``adapters``: feed a model's streaming tool-call events (OpenAI, Anthropic, raw code) and the
code is pre-streamed and executed as the model writes it. ``mcp_server``: the gateway as a Model
Context Protocol server (``gateway mcp``). Both sit on the public client (``gateway.client``).
"""
