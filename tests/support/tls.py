"""A throwaway certificate authority and a server certificate it issued (trustme)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import trustme

from gateway.client import client_context


@dataclasses.dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        return client_context(str(self.ca_file))

    def issue(self, ca: trustme.CA) -> None:
        """(Re)write the server's certificate and key, issued by ``ca``, at the same paths."""
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        self.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(self.key_file))


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    pki = Pki(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.issue(ca)
    return pki
