"""Small cells the MCP tools run in the thread's kernel to see ``/mnt/data`` as the code sees
it (uploads, files the code wrote, files it deleted). They define one function, call it, and
delete it, so the model's namespace is left as it was; their output is one JSON line."""

from __future__ import annotations

import json

LIST_FILES = '''\
def _gateway_list_files():
    import json, os
    found = []
    for folder, subfolders, names in os.walk("/mnt/data"):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith(".") and d != "__pycache__")
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.append({"path": os.path.relpath(path, "/mnt/data"), "size": info.st_size,
                          "modified": round(info.st_mtime, 3)})
    print(json.dumps(found))
_gateway_list_files()
del _gateway_list_files
'''

_READ_FILE = '''\
def _gateway_read_file(path, limit):
    import base64, json, os
    full = os.path.realpath(os.path.join("/mnt/data", path))
    if not full.startswith("/mnt/data/"):
        raise ValueError(f"{path!r} is not inside /mnt/data")
    size = os.path.getsize(full)
    with open(full, "rb") as source:
        data = source.read(limit)
    print(json.dumps({"size": size, "base64": base64.b64encode(data).decode()}))
_gateway_read_file(PATH, LIMIT)
del _gateway_read_file
'''


def read_file(path: str, limit: int) -> str:
    return _READ_FILE.replace("PATH", json.dumps(path)).replace("LIMIT", str(int(limit)))


def parse(output: str) -> object:
    """The JSON line a helper cell printed (its last line)."""
    lines = output.strip().splitlines()
    if not lines:
        raise ValueError("the helper cell printed nothing")
    return json.loads(lines[-1])
