"""Bearer tokens for the Streamable HTTP transport, checked by the gateway itself.

The MCP server holds no token list: a presented token is valid when the gateway accepts it for
a websocket, and the connection it opened is the one that request's tools then use.
"""

from __future__ import annotations

import hashlib

from mcp.server.auth.provider import AccessToken

from .backend import GatewayBackend


class GatewayTokenVerifier:
    """The SDK's ``TokenVerifier``: a token is good if the gateway takes it."""

    def __init__(self, backend: GatewayBackend) -> None:
        self.backend = backend

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token or not await self.backend.accepts(token):
            return None
        # The client id names the token without revealing it (logs, session ownership).
        client_id = "gateway-token-" + hashlib.sha256(token.encode()).hexdigest()[:16]
        return AccessToken(token=token, client_id=client_id, scopes=[])
