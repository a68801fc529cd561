"""JWTs: EdDSA and ES256 by key id from a JWKS file that rotates without restart; issuer, audience, expiry,
not-before, lifetime and algorithm checked; roles and their claims; `ackhub token` writes keys 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.core.clock import ManualClock
from ackhub.core.errors import Unauthenticated
from ackhub.hub.auth.jwt import Claims, Tokens, issue_token
from ackhub.hub.cli import main
from tests.security_data import ALPHA, ED_KEY, KEYS, write_jwks

NOW_S = 1_780_000_000


@pytest.fixture(name="tokens")
def fixture_tokens(tmp_path: Path) -> Tokens:
    clock = ManualClock(NOW_S * 1000)
    return Tokens(
        clock, issuer="ackhub-dev", audience="ackhub", jwks_file=str(write_jwks(tmp_path / "jwks.json")),
        max_lifetime_ms=3_600_000,
    )  # fmt: skip


def _token(kid: str = "ed-2026-01", **options: object) -> str:
    fields: dict[str, object] = {
        "role": "operator", "subject": "alice", "issuer": "ackhub-dev", "audience": "ackhub", "now_s": NOW_S,
        "ttl_s": 600, "kid": kid, "jurisdiction": "0202",
    }  # fmt: skip
    fields.update(options)
    return issue_token(KEYS.get(kid, ED_KEY), **fields)  # type: ignore[arg-type]


def test_both_algorithms_and_every_role(tokens: Tokens) -> None:
    """EdDSA and ES256 tokens verify; each role yields its subject and, for operators, the jurisdiction."""
    assert tokens.verify(_token()) == Claims("operator", "alice", "0202")
    assert tokens.verify(_token("ec-2026-01", role="enterprise", subject=ALPHA)) == Claims(
        "enterprise", ALPHA
    )
    assert tokens.verify(_token(role="agency", subject="tax")) == Claims("agency", "tax")
    assert tokens.verify(_token(role="administrator", subject="root")) == Claims("administrator", "root")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_token(issuer="elsewhere"), "TOKEN_INVALID"),
        (_token(audience="elsewhere"), "TOKEN_INVALID"),
        (_token(now_s=NOW_S - 700), "TOKEN_EXPIRED"),
        (_token(now_s=NOW_S + 60), "TOKEN_NOT_YET_VALID"),
        (_token(ttl_s=7200), "TOKEN_INVALID"),
        (_token(kid="retired-1"), "UNKNOWN_KEY"),
        (_token(role="enterprise", subject="91110000600037341X"), "TOKEN_INVALID"),
        (_token(jurisdiction="Shanghai"), "TOKEN_INVALID"),
        (
            jwt.encode({"iss": "ackhub-dev", "aud": "ackhub", "exp": NOW_S + 60}, "s" * 32, "HS256"),
            "TOKEN_INVALID",
        ),
        (
            jwt.encode({"iss": "ackhub-dev", "aud": "ackhub", "exp": NOW_S + 60}, None, "none"),
            "TOKEN_INVALID",
        ),
    ],
    ids=[
        "issuer",
        "audience",
        "expired",
        "nbf",
        "too long",
        "unknown kid",
        "bad uscc",
        "jurisdiction",
        "hs256",
        "none",
    ],
)
def test_bad_tokens_are_refused_with_a_reason(tokens: Tokens, token: str, reason: str) -> None:
    """Each bad token is UNAUTHENTICATED with a precise reason."""
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(token)
    assert refused.value.reason == reason


def test_keys_rotate_without_restart(tokens: Tokens, tmp_path: Path) -> None:
    """A key added to the JWKS file is accepted and a removed one refused, by the same verifier."""
    new = Ed25519PrivateKey.generate()
    fresh = issue_token(
        new,
        role="agency",
        subject="fx",
        issuer="ackhub-dev",
        audience="ackhub",
        now_s=NOW_S,
        kid="ed-2026-02",
    )
    with pytest.raises(Unauthenticated):
        tokens.verify(fresh)
    write_jwks(tmp_path / "jwks.json", {"ed-2026-02": new})
    assert tokens.verify(fresh) == Claims("agency", "fx")
    with pytest.raises(Unauthenticated) as retired:
        tokens.verify(_token())
    assert retired.value.reason == "UNKNOWN_KEY"


def test_token_commands_write_keys_0600_and_issue_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ackhub token keys` writes a 0600 key and a JWKS; `ackhub token issue` signs a token it verifies."""
    jwks = tmp_path / "jwks.json"
    assert (
        main(
            [
                "token",
                "keys",
                "--kid",
                "ops-1",
                "--algorithm",
                "ES256",
                "--out",
                str(tmp_path),
                "--jwks",
                str(jwks),
            ]
        )
        == 0
    )
    assert stat.S_IMODE(os.stat(tmp_path / "ops-1.pem").st_mode) == 0o600
    capsys.readouterr()
    key = str(tmp_path / "ops-1.pem")
    argv = [
        "token",
        "issue",
        "--role",
        "operator",
        "--subject",
        "olga",
        "--jurisdiction",
        "53",
        "--kid",
        "ops-1",
    ]
    assert main([*argv, "--key", key, "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip()
    import time

    verifier = Tokens(
        ManualClock(int(time.time() * 1000)), issuer="ackhub-dev", audience="ackhub", jwks_file=str(jwks)
    )
    assert verifier.verify(token) == Claims("operator", "olga", "53")
