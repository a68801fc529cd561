"""Where the hub's checkpoint signing key comes from: a key file, a development key file beside a SQLite
database, or (development only) a seed derived from the database URL."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from ackhub.audit.acks import load_private_key, private_key_pem


def signing_key(
    key_file: str | None, database_url: str, create: bool = True
) -> tuple[Ed25519PrivateKey, str]:
    """The checkpoint signing key and where it came from (see `hub.config.Audit`). Without `create`, a
    development key file that does not exist yet is FileNotFoundError rather than made."""
    if key_file:
        return load_private_key(Path(key_file).read_text()), key_file
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(f"{url.database}.audit-key.pem")
        if path.exists():
            return load_private_key(path.read_text()), str(path)
        if not create:
            raise FileNotFoundError(f"no audit key at {path}: the hub makes it when it first starts")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(private_key_pem(key))
        return key, str(path)
    seed = hashlib.sha256(b"ackhub development audit key\n" + url.render_as_string(True).encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed), "development seed (derived from the database URL)"
