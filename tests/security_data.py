"""Keys and tokens for the security tests: a JWKS file with an Ed25519 and an ES256 key, a hub configured
to accept tokens signed with them, and metadata carrying a token for each role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.core.clock import Clock
from ackhub.hub.auth.jwt import PrivateKey, issue_token, jwk

ED_KEY = Ed25519PrivateKey.from_private_bytes(b"security-tests-ed".ljust(32, b"\0"))
EC_KEY = ec.derive_private_key(0x5EC0417, ec.SECP256R1())
KEYS: dict[str, PrivateKey] = {"ed-2026-01": ED_KEY, "ec-2026-01": EC_KEY}
ALPHA = "91110000600037341L"  # the subject of the records the tests publish
BETA = "91310115MA1G4L1WX7"
DECLARATION = "020220260525641690"  # customs office 0202, district 02
TYPE = "customs.export_declaration.released"


def write_jwks(path: Path, keys: dict[str, PrivateKey] | None = None) -> Path:
    entries = [jwk(key.public_key(), kid) for kid, key in (keys or KEYS).items()]
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return path


def with_jwks(path: Path) -> Any:
    """A `start_hub` edit: accept tokens signed by the keys of the JWKS file at `path`."""

    def edit(config: dict[str, Any]) -> None:
        config["auth"] = {"jwks_file": str(write_jwks(path))}

    return edit


def bearer(
    clock: Clock,
    role: str,
    subject: str,
    *,
    jurisdiction: str | None = None,
    kid: str = "ed-2026-01",
    ttl_s: int = 600,
    audience: str = "ackhub",
) -> tuple[tuple[str, str]]:
    token = issue_token(
        KEYS[kid],
        role=role,
        subject=subject,
        issuer="ackhub-dev",
        audience=audience,
        now_s=clock.now_ms() // 1000,
        ttl_s=ttl_s,
        kid=kid,
        jurisdiction=jurisdiction,
    )
    return (("authorization", f"Bearer {token}"),)
