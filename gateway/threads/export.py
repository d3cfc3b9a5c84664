"""The thread as a notebook, from the cell records in the file store (blocking: call these in
a worker thread), and the client side of ``gateway thread export``."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ..wire.protocol import client_thread_id
from .cells import CELL_NAME
from .files import FileStore
from .notebook import build_notebook, to_bytes

log = logging.getLogger(__name__)


def cell_records(store: FileStore, thread_id: str, owner: str) -> list[dict]:
    """The thread's cell records that ``owner`` owns, in the order they ran."""
    records = []
    for stored in store.list(thread_id):  # ordered by creation time
        if stored.name != CELL_NAME or stored.owner != owner:
            continue
        try:
            record = json.loads(store.read(stored))
        except (OSError, ValueError) as exc:  # a lost blob costs one cell, not the notebook
            log.warning("cell record %s unreadable: %s", stored.id, exc)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def notebook_bytes(store: FileStore, thread_id: str, owner: str) -> bytes | None:
    """The ``.ipynb`` of every cell the thread ran for ``owner``; None when it ran none (or
    is somebody else's: both look the same)."""
    records = cell_records(store, thread_id, owner)
    if not records:
        return None

    def read_image(file_id: str) -> bytes | None:
        stored = store.get(file_id, owner)
        if stored is None or stored.thread_id != thread_id:
            return None
        try:
            return store.read(stored)
        except OSError:
            return None

    return to_bytes(build_notebook(records, read_image, client_thread_id(thread_id)))


def download_notebook(base_url: str, token: str, thread_id: str,
                      context: ssl.SSLContext | None = None, timeout: float = 60) -> bytes:
    """``GET /threads/{id}/notebook`` of a running gateway; raises ``LookupError`` on 404."""
    url = (base_url.rstrip("/") + "/threads/" + urllib.parse.quote(thread_id, safe="")
           + "/notebook")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LookupError(f"no notebook for thread {thread_id!r} (unknown, no cell ran, "
                              "or not yours)") from exc
        raise
