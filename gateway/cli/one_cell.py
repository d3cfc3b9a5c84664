"""``gateway exec``: one cell, on a running gateway or on a throwaway one started here."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .display import print_envelope, progress


async def run_exec(code: str, url: str | None, token: str | None, timeout: float,
                   as_json: bool) -> str | None:
    """Run one cell, on a running gateway or on a throwaway one, streaming its envelopes."""
    from ..client import GatewayClient, is_final

    async def run(client: GatewayClient) -> str | None:
        # A private helper of tempfile (random, collision-checked names) that typeshed omits.
        thread = client.thread("exec-" + next(tempfile._get_candidate_names()))  # type: ignore[attr-defined]
        call_id = await thread.execute(code, timeout=timeout)
        state = None
        async for envelope in thread.stream(call_id):
            print_envelope(envelope, as_json)
            if is_final(envelope):
                chunk = envelope["chunk"]
                state = chunk["content"].get("state") if chunk["type"] == "status" else None
        if not as_json:
            print()
        return state

    if url:
        async with await GatewayClient.connect(url, token or "") as client:
            return await run(client)
    from ..config import from_environment
    from ..embed import start_embedded

    with tempfile.TemporaryDirectory(prefix="gateway-exec-") as data_dir:
        settings = from_environment(data_dir=Path(data_dir), port=0, host="127.0.0.1",
                                    pool_size=1, max_kernels=2, tokens={"exec": "exec"})
        with progress("starting a sandboxed kernel"):
            embedded = await start_embedded(settings)
        try:
            async with await GatewayClient.connect(embedded.url, "exec") as client:
                return await run(client)
        finally:
            await embedded.close()
