"""`ackhub audit verify|key` and `ackhub token issue|keys`. (`proof` and `trace` are the partners' client's
commands, `ackhub.client.cli`, which `ackhub` offers too.)

`audit verify` needs no server: it reads the database, read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ackhub.client.cli import key_argument

TOKEN_ENV = "ACKHUB_TOKEN"


NO_ANCHOR = """refused: `audit verify` needs a trust anchor, something that the hub's database and key cannot
forge, to check the log against. Give one of:
  --witness URL --witness-key VKEY     the checkpoint a partner agency's witness last cosigned
  --checkpoint FILE                    a checkpoint kept from earlier (a witness's
                                       URL/checkpoint?origin=ORIGIN, or a delivery proof's signed_note);
                                       add --witness-key (and --quorum) to require its cosignatures
  --log-key VKEY --min-size N          the hub's key, and a size the log is known to have reached
The hub's key: `ackhub audit key --config FILE` where the hub runs; a witness's key: from its operator."""


def _anchor(args: argparse.Namespace, origin: str) -> Any:
    """The trust anchor the options describe; SystemExit with the reason when they do not make one."""
    import httpx

    from ackhub.audit.acks import load_public_key
    from ackhub.audit.note import NoteError, Verifier, parse_checkpoint, parse_vkey
    from ackhub.audit.proofs import WitnessPolicy
    from ackhub.hub.ledger.verify import TrustAnchor

    try:
        witnesses = tuple(parse_vkey(key_argument(k)) for k in args.witness_key)
        log_key = parse_vkey(key_argument(args.log_key)) if args.log_key else None
        if log_key is None and args.public_key:
            log_key = Verifier(origin, load_public_key(Path(args.public_key).read_text()))
    except (NoteError, ValueError, OSError) as error:
        raise SystemExit(f"refused: a key: {error}") from None
    quorum = args.quorum if args.quorum is not None else min(1, len(witnesses))
    if quorum > len(witnesses):
        raise SystemExit(f"refused: --quorum {quorum} but only {len(witnesses)} --witness-key given")
    text = None
    if args.checkpoint:
        try:
            text = Path(args.checkpoint).read_text(encoding="utf-8")
        except OSError as error:
            raise SystemExit(f"refused: cannot read {args.checkpoint}: {error}") from None
    elif args.witness:
        if not witnesses:
            raise SystemExit("refused: --witness needs --witness-key, the key to check its cosignature with")
        url = args.witness.rstrip("/") + "/checkpoint"
        try:
            answer = httpx.get(url, params={"origin": origin}, timeout=10)
        except httpx.HTTPError as error:
            raise SystemExit(f"refused: cannot reach the witness at {url}: {error}") from None
        if answer.status_code != 200:
            raise SystemExit(
                f"refused: the witness answered {answer.status_code}: {answer.text.strip()[:200]}"
            )
        text = answer.text
    if text is None and (log_key is None or not args.min_size):
        raise SystemExit(NO_ANCHOR)
    checkpoint = None
    if text is not None:
        try:
            checkpoint = parse_checkpoint(text)
        except NoteError as error:
            raise SystemExit(f"refused: the trusted checkpoint is malformed: {error}") from None
        if checkpoint.body.origin != origin:
            raise SystemExit(
                f"refused: the trusted checkpoint is of log {checkpoint.body.origin!r}, not {origin!r}"
            )
    return TrustAnchor(checkpoint, log_key, args.min_size or 0, WitnessPolicy(witnesses, quorum))


def _open_read_only(url: str) -> Any:
    """The database, refusing a SQLite file that does not exist (opening it would create it)."""
    from sqlalchemy.engine import make_url

    from ackhub.hub.store.db import Database, normalize_url

    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise SystemExit(f"refused: no database at {parsed.database!r}")
    return Database(url)


def _audit_verify(args: argparse.Namespace) -> int:
    """Read-only: reads the configuration and the database and writes nothing, no key either."""
    from ackhub.core.errors import ConfigError
    from ackhub.hub.config import load_settings
    from ackhub.hub.ledger.verify import verify_log

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        anchor = _anchor(args, settings.audit.origin)
        db = _open_read_only(args.database_url or settings.server.database_url)
    except SystemExit as refused:
        print(refused.code, file=sys.stderr)
        return 2
    try:
        verdict = verify_log(db, anchor=anchor)
    finally:
        db.close()
    print(verdict.summary())
    if verdict.ok and anchor.checkpoint is not None:
        print(f"  the log extends the trusted checkpoint of {anchor.size} leaves")
    return 0 if verdict.ok else 1


def _audit_key(args: argparse.Namespace) -> int:
    """Print the hub's checkpoint verifier key (read-only: never makes a key)."""
    from ackhub.audit.checkpoint import log_verifier
    from ackhub.core.errors import ConfigError
    from ackhub.hub.config import load_settings
    from ackhub.hub.ledger.keys import signing_key

    try:
        settings = load_settings(args.config)
        key, source = signing_key(settings.audit.signing_key_file, settings.server.database_url, create=False)
    except (ConfigError, OSError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    print(log_verifier(settings.audit.origin, key.public_key()).vkey())
    print(f"(from {source})", file=sys.stderr)
    return 0


def _token_issue(args: argparse.Namespace) -> int:
    import time

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ackhub.audit.acks import load_private_key
    from ackhub.hub.auth.jwt import issue, issue_token

    text = Path(args.key).read_text()
    pem = load_pem_private_key(text.encode(), None) if "BEGIN" in text else None
    key = pem if isinstance(pem, EllipticCurvePrivateKey) else load_private_key(text)
    subject = args.uscc or args.agency or args.subject
    if args.role == "enterprise" and not args.kid and not isinstance(key, EllipticCurvePrivateKey):
        print(
            issue(
                key,
                args.uscc,
                issuer=args.issuer,
                audience=args.audience,
                now_s=int(time.time()),
                ttl_s=args.ttl,
            )
        )
        return 0
    if not subject:
        raise SystemExit("name the subject: --uscc (enterprise), --agency (agency) or --subject (person)")
    print(
        issue_token(
            key,
            role=args.role,
            subject=subject,
            issuer=args.issuer,
            audience=args.audience,
            now_s=int(time.time()),
            ttl_s=args.ttl,
            kid=args.kid,
            jurisdiction=args.jurisdiction,
        )
    )
    return 0


def _token_keys(args: argparse.Namespace) -> int:

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ackhub.audit.acks import private_key_pem
    from ackhub.hub.auth.jwt import jwk
    from ackhub.hub.auth.pki import write_secret

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = (
        ec.generate_private_key(ec.SECP256R1()) if args.algorithm == "ES256" else Ed25519PrivateKey.generate()
    )
    from cryptography.hazmat.primitives import serialization

    pem = (
        private_key_pem(key).encode()
        if isinstance(key, Ed25519PrivateKey)
        else key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    try:
        write_secret(out / f"{args.kid}.pem", pem)
    except FileExistsError:
        print(f"{out / (args.kid + '.pem')} exists; refusing to overwrite a private key", file=sys.stderr)
        return 1
    jwks_path = Path(args.jwks)
    data = json.loads(jwks_path.read_text()) if jwks_path.exists() else {"keys": []}
    data["keys"] = [k for k in data["keys"] if k.get("kid") != args.kid] + [jwk(key.public_key(), args.kid)]
    jwks_path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"private key written to {out / (args.kid + '.pem')} (mode 0600); public key added to {jwks_path}")
    return 0


def add_commands(commands: Any) -> None:
    """Register the subcommands on `ackhub`'s subparsers."""
    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="recompute the log from the database (read-only) and check it against a trust anchor",
    )
    verify.add_argument("--config", required=True, help="the hub's TOML configuration")
    verify.add_argument("--database-url", help="overrides [server].database_url")
    verify.add_argument("--checkpoint", help="a trusted checkpoint (signed note) file")
    verify.add_argument("--witness", help="a witness's URL: trust the checkpoint it last cosigned")
    verify.add_argument(
        "--witness-key", action="append", default=[], help="a witness's verifier key (or a file); repeatable"
    )
    verify.add_argument("--quorum", type=int, help="trusted cosignatures required (default 1 with keys)")
    verify.add_argument("--log-key", help="the hub's verifier key (or a file): `ackhub audit key`")
    verify.add_argument("--public-key", help="the hub's public key, PEM or base64 (instead of --log-key)")
    verify.add_argument(
        "--min-size", type=int, help="with --log-key: the size the log is known to have reached"
    )
    verify.set_defaults(run=_audit_verify)
    key = audit_commands.add_parser("key", help="print the hub's checkpoint verifier key (makes none)")
    key.add_argument("--config", required=True)
    key.set_defaults(run=_audit_key)

    token = commands.add_parser("token", help="JWTs for agencies, enterprises, operators (development)")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_commands.add_parser("issue", help="sign a JWT with a development key")
    issue.add_argument(
        "--role", choices=("agency", "enterprise", "operator", "administrator"), default="enterprise"
    )
    issue.add_argument("--uscc", help="an enterprise's USCC")
    issue.add_argument("--agency", help="an agency's id")
    issue.add_argument("--subject", help="an operator's or administrator's name")
    issue.add_argument("--jurisdiction", help="an operator's: HQ, 2-digit district or 4-digit office")
    issue.add_argument("--kid", help="the key id in the hub's JWKS file")
    issue.add_argument(
        "--key", required=True, help="private key file: Ed25519 (PEM or hex seed) or P-256 PEM"
    )
    issue.add_argument("--issuer", default="ackhub-dev")
    issue.add_argument("--audience", default="ackhub")
    issue.add_argument("--ttl", type=int, default=3600, help="seconds")
    issue.set_defaults(run=_token_issue)
    keys = token_commands.add_parser("keys", help="make a signing key and add its public key to a JWKS file")
    keys.add_argument("--kid", required=True)
    keys.add_argument("--algorithm", choices=("EdDSA", "ES256"), default="EdDSA")
    keys.add_argument("--out", default=".", help="folder for the private key")
    keys.add_argument("--jwks", default="jwks.json", help="the JWKS file the hub reads ([auth] jwks_file)")
    keys.set_defaults(run=_token_keys)
