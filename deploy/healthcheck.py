"""The image's HEALTHCHECK: GET /healthz on the gateway's own port (HTTPS when the gateway has
a certificate; its name is not checked, the request never leaves the container)."""

import os
import ssl
import sys
import urllib.request

port = os.environ.get("GATEWAY_PORT", "8765")
scheme = "https" if os.environ.get("GATEWAY_TLS_CERT") else "http"
context = ssl._create_unverified_context() if scheme == "https" else None
try:
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=4,
                                context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(exc, file=sys.stderr)
    sys.exit(1)
