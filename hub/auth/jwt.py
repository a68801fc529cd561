"""Enterprise tokens: EdDSA (Ed25519) JWTs carrying the enterprise's USCC, checked with PyJWT against the
public key, issuer and audience configured in `[auth]`.

Claims: `iss`, `aud`, `exp` (all required), `iat`, `sub` (free), `uscc` (required, check character verified).
`issue` makes one, for development and the docs (`ackhub token issue`).
"""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.clock import Clock
from hub.errors import Unauthenticated
from hub.identifiers import check_uscc

ALGORITHM = "EdDSA"


class EnterpriseTokens:
    def __init__(self, public_key: Ed25519PublicKey, issuer: str, audience: str, clock: Clock) -> None:
        self.public_key = public_key
        self.issuer = issuer
        self.audience = audience
        self.clock = clock

    def verify(self, token: str) -> str:
        """The USCC the token vouches for; Unauthenticated with a precise reason otherwise."""
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                # expiry is checked below against the hub's clock, not the wall clock
                options={"require": ["exp", "iss", "aud", "uscc"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(
                f"the token is not valid: {exc}", reason="TOKEN_INVALID", metadata={"why": str(exc)}
            ) from None
        if not isinstance(claims["exp"], int) or claims["exp"] * 1000 <= self.clock.now_ms():
            raise Unauthenticated("the token has expired", reason="TOKEN_EXPIRED")
        uscc = claims["uscc"]
        problem = check_uscc(uscc) if isinstance(uscc, str) else "is not a string"
        if problem:
            raise Unauthenticated(
                f"the token's uscc claim is not a valid USCC: {problem}", reason="TOKEN_INVALID"
            )
        return str(uscc)


def issue(
    private_key: Ed25519PrivateKey, uscc: str, *, issuer: str, audience: str, now_s: int, ttl_s: int = 3600
) -> str:
    claims = {"iss": issuer, "aud": audience, "sub": uscc, "uscc": uscc, "iat": now_s, "exp": now_s + ttl_s}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)
