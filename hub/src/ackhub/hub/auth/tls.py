"""The hub's listening port: plain for loopback development, TLS with `[server] tls_cert_file` and
`tls_key_file`, mutual TLS when `tls_client_ca_file` is set too (every client then presents a certificate
issued by that CA; the TLS handshake refuses expired ones and ones from another CA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from ackhub.hub.config import Server


def credentials(server: Server) -> grpc.ServerCredentials | None:
    if server.tls_cert_file is None or server.tls_key_file is None:
        return None
    pair = (Path(server.tls_key_file).read_bytes(), Path(server.tls_cert_file).read_bytes())
    client_ca = Path(server.tls_client_ca_file).read_bytes() if server.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def listen(grpc_server: Any, server: Server) -> int:
    """Bind `server.listen` (TLS when configured); the bound port, 0 if it could not bind."""
    found = credentials(server)
    if found is None:
        return int(grpc_server.add_insecure_port(server.listen))
    return int(grpc_server.add_secure_port(server.listen, found))
