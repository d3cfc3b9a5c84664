"""Plain HTTP requests to a gateway, off the event loop: errors come back as statuses."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request


async def download(http: str, file_id: str, token: str = "tok-alice") -> tuple[int, bytes, dict]:
    """GET /files/{file_id}: (status, body, headers), errors included."""

    def get():
        request = urllib.request.Request(f"{http}/files/{file_id}",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    return await asyncio.to_thread(get)


async def http_get(url: str, token: str | None = None, timeout: float = 30
                   ) -> tuple[int, bytes, dict]:
    def get():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    return await asyncio.to_thread(get)
