"""Tokens: JWTs (PyJWT) signed with an asymmetric key — EdDSA (Ed25519) or ES256 (P-256), nothing else —
carrying who the caller is and in which role.

Keys are found by the token's `kid` in a JWKS file (`[auth] jwks_file`), re-read when the file changes, so
a new key can be added before tokens signed with it appear and an old one removed after they expire: keys
rotate without a restart. A token without `kid` is checked against `[auth] enterprise_jwt_public_key`
(the single Ed25519 key of earlier versions) when that is configured.

Claims: `iss`, `aud`, `exp` (required), `nbf` (checked when present), `sub`, and `role`:

| role | extra claims |
|---|---|
| `enterprise` (the default when `role` is absent) | `uscc`, check character verified |
| `operator` | `jurisdiction`: `HQ`, a 2-digit customs district or a 4-digit customs office code |
| `agency` | `agency`: a registered agency id (checked by the authenticator) |
| `administrator` | — |

Times are checked against the hub's clock; a token may live at most `[auth] max_token_lifetime`.
`issue_token` makes one for development and tests (`ackhub token issue`).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ackhub.core.clock import Clock
from ackhub.core.errors import Unauthenticated
from ackhub.core.identifiers import check_uscc

ALGORITHM = "EdDSA"
ALGORITHMS = frozenset({"EdDSA", "ES256"})
ROLES = ("agency", "enterprise", "operator", "administrator")
JURISDICTION = re.compile(r"^(HQ|[0-9]{2}|[0-9]{4})$")
PublicKey = Ed25519PublicKey | EllipticCurvePublicKey
PrivateKey = Ed25519PrivateKey | EllipticCurvePrivateKey


@dataclass(frozen=True)
class Claims:
    """What a verified token vouches for."""

    role: str
    subject: str  # the USCC for an enterprise, the agency id for an agency, the person otherwise
    jurisdiction: str = ""


def _invalid(why: str) -> Unauthenticated:
    return Unauthenticated(f"the token is not valid: {why}", reason="TOKEN_INVALID", metadata={"why": why})


def _algorithm(key: Any) -> str:
    if isinstance(key, Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ValueError("only Ed25519 (EdDSA) and P-256 (ES256) keys are accepted")


def read_jwks(path: str | Path) -> dict[str, PublicKey]:
    """The public keys of a JWKS file by key id; ValueError naming the bad key otherwise."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    keys: dict[str, PublicKey] = {}
    for index, entry in enumerate(data.get("keys", [])):
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"keys[{index}] has no kid")
        if "d" in entry:
            raise ValueError(
                f"keys[{index}] ({kid!r}) holds a private key; a JWKS file holds public keys only"
            )
        key = jwt.PyJWK(entry).key
        _algorithm(key)
        keys[kid] = key
    return keys


def jwk(public_key: PublicKey, kid: str) -> dict[str, Any]:
    """The JWK (RFC 7517) of a public key, for a JWKS file."""
    algorithm = _algorithm(public_key)
    if isinstance(public_key, Ed25519PublicKey):
        entry: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public_key))
    else:
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return {**entry, "kid": kid, "alg": algorithm, "use": "sig"}


class Tokens:
    """Verifies tokens; `keys` by key id come from a JWKS file that is re-read when it changes."""

    def __init__(
        self,
        clock: Clock,
        *,
        issuer: str,
        audience: str,
        jwks_file: str | None = None,
        default_key: PublicKey | None = None,
        max_lifetime_ms: int = 86_400_000,
    ) -> None:
        self.clock = clock
        self.issuer = issuer
        self.audience = audience
        self.jwks_file = jwks_file
        self.default_key = default_key
        self.max_lifetime_ms = max_lifetime_ms
        self._keys: dict[str, PublicKey] = {}
        self._stamp: tuple[int, int] | None = None
        self._refresh()

    def _refresh(self) -> None:
        if self.jwks_file is None:
            return
        stat = Path(self.jwks_file).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._keys, self._stamp = read_jwks(self.jwks_file), stamp

    def _key(self, token: str) -> PublicKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _invalid(str(exc)) from None
        if header.get("alg") not in ALGORITHMS:
            raise _invalid(f"algorithm {str(header.get('alg'))[:16]!r} is not accepted (EdDSA or ES256)")
        kid = header.get("kid")
        if kid is None:
            if self.default_key is None:
                raise _invalid("the token names no key (kid)")
            return self.default_key
        with contextlib.suppress(OSError, ValueError):  # a file being rewritten: keep the keys read last
            self._refresh()
        key = self._keys.get(str(kid))
        if key is None:
            raise Unauthenticated(
                "the token's key is not known", reason="UNKNOWN_KEY", metadata={"kid": str(kid)[:64]}
            )
        return key

    def verify(self, token: str) -> Claims:
        """The claims the token vouches for; Unauthenticated with a precise reason otherwise."""
        key = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_algorithm(key)],
                issuer=self.issuer,
                audience=self.audience,
                # times are checked below against the hub's clock, not the wall clock
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise _invalid(str(exc)) from None
        now_ms = self.clock.now_ms()
        exp, nbf = claims["exp"], claims.get("nbf")
        if not isinstance(exp, int) or exp * 1000 <= now_ms:
            raise Unauthenticated("the token has expired", reason="TOKEN_EXPIRED")
        if exp * 1000 - now_ms > self.max_lifetime_ms:
            raise _invalid("it lives longer than this hub allows ([auth] max_token_lifetime)")
        if nbf is not None and (not isinstance(nbf, int) or nbf * 1000 > now_ms):
            raise Unauthenticated("the token is not valid yet (nbf)", reason="TOKEN_NOT_YET_VALID")
        return _claims(claims)


def _claims(claims: dict[str, Any]) -> Claims:
    role = claims.get("role", "enterprise")
    subject = claims.get("sub")
    if role not in ROLES:
        raise _invalid(f"unknown role {str(role)[:32]!r}")
    if role == "enterprise":
        uscc = claims.get("uscc")
        problem = check_uscc(uscc) if isinstance(uscc, str) else "is missing or not a string"
        if problem:
            raise _invalid(f"the uscc claim is not a valid USCC: {problem}")
        return Claims("enterprise", str(uscc))
    if role == "agency":
        subject = claims.get("agency", subject)
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise _invalid(f"a {role} token needs a subject ('sub' or 'agency')")
    if role == "operator":
        jurisdiction = claims.get("jurisdiction")
        if not isinstance(jurisdiction, str) or not JURISDICTION.match(jurisdiction):
            raise _invalid("an operator token needs a jurisdiction: HQ, 2 or 4 digits")
        return Claims("operator", subject, jurisdiction)
    return Claims(role, subject)


def issue_token(
    private_key: PrivateKey,
    *,
    role: str,
    subject: str,
    issuer: str,
    audience: str,
    now_s: int,
    ttl_s: int = 3600,
    kid: str | None = None,
    jurisdiction: str | None = None,
) -> str:
    """A signed token for `role`; `subject` is the USCC, agency id or person (development and tests)."""
    if role not in ROLES:
        raise ValueError(f"role is one of {', '.join(ROLES)}")
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "role": role,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ttl_s,
    }
    if role == "enterprise":
        claims["uscc"] = subject
    elif role == "agency":
        claims["agency"] = subject
    elif role == "operator":
        claims["jurisdiction"] = jurisdiction or "HQ"
    algorithm = "EdDSA" if isinstance(private_key, Ed25519PrivateKey) else "ES256"
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def issue(
    private_key: Ed25519PrivateKey, uscc: str, *, issuer: str, audience: str, now_s: int, ttl_s: int = 3600
) -> str:
    """An enterprise token without key id, as earlier versions made them."""
    claims = {"iss": issuer, "aud": audience, "sub": uscc, "uscc": uscc, "iat": now_s, "exp": now_s + ttl_s}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)
