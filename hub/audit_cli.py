"""`ackhub audit verify`, `ackhub proof get|verify`, `ackhub trace` and `ackhub token issue`.

`audit verify` and `proof verify` need no server: the first reads the database, the second only the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

TOKEN_ENV = "ACKHUB_TOKEN"


def _audit_verify(args: argparse.Namespace) -> int:
    from audit.checkpoint import signing_key
    from audit.verify import verify_log
    from hub.config import load_settings
    from hub.errors import ConfigError
    from hub.signing import load_public_key
    from hub.store.db import Database

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    url = args.database_url or settings.server.database_url
    if args.public_key:
        trusted = load_public_key(Path(args.public_key).read_text())
    else:
        trusted = signing_key(settings.audit.signing_key_file, url)[0].public_key()
    db = Database(url)
    try:
        verdict = verify_log(db, trusted)
    finally:
        db.close()
    print(verdict.summary())
    return 0 if verdict.ok else 1


def _proof_verify(args: argparse.Namespace) -> int:
    from audit.verify import verify_delivery_proof
    from hub.signing import load_public_key

    try:
        document: Any = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read {args.file}: {exc}")
        return 1
    trusted = load_public_key(args.hub_key) if args.hub_key else None
    verdict = verify_delivery_proof(document, trusted)
    for line in verdict.statements:
        print(f"  ✓ {line}")
    for line in verdict.failures:
        print(f"  ✗ {line}")
    print("VERIFIED: every signature and proof in the document checks out." if verdict.ok else "FAILED")
    return 0 if verdict.ok else 1


def _channel_and_metadata(args: argparse.Namespace) -> tuple[Any, tuple[tuple[str, str], ...]]:
    import grpc

    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"a token is needed: --token or ${TOKEN_ENV} (see `ackhub token issue`)")
    return grpc.insecure_channel(args.target), (("authorization", f"Bearer {token}"),)


def _proof_get(args: argparse.Namespace) -> int:
    from hub._proto.ackhub.v1 import trace_service_pb2 as pb
    from hub._proto.ackhub.v1 import trace_service_pb2_grpc as pb_grpc

    channel, metadata = _channel_and_metadata(args)
    with channel:
        answer = pb_grpc.TraceServiceStub(channel).GetDeliveryProof(
            pb.GetDeliveryProofRequest(record_id=args.record_id), metadata=metadata, timeout=30
        )
    Path(args.out).write_bytes(answer.document)
    print(f"delivery proof written to {args.out}; check it with: ackhub proof verify {args.out}")
    return 0


def format_timeline(traced: Any) -> list[str]:
    """A `TraceRecordResponse` as lines for a person to read."""
    from hub._proto.ackhub.v1.types_pb2 import ACK_LEVEL_RECEIVED
    from hub.api.convert import ACK_STATUS_NAMES, STATE_NAMES
    from hub.clock import to_rfc3339_ms

    record = traced.record
    lines = [
        f"record {record.record_id}  {record.record_type}",
        f"  declaration {record.declaration_number or '-'}  digest {record.digest}",
    ]
    for recipient in traced.recipients:
        delivery = recipient.delivery
        state = STATE_NAMES.get(delivery.state, "?")
        if delivery.closed:
            done = f"closed by {ACK_STATUS_NAMES.get(delivery.closed_by, '?')}"
        else:
            done = "open: waiting for " + (
                "RECEIVED" if delivery.required_level == ACK_LEVEL_RECEIVED else "ACCEPTED or REJECTED"
            )
        lines.append(f"  → {recipient.agency_name} ({recipient.agency_id}): {state}, {done}")
        for event in recipient.events:
            when = to_rfc3339_ms(event.event_time.ToMilliseconds())
            lines.append(f"      {when}  {event.detail}  [{event.actor}]")
    return lines


def _trace(args: argparse.Namespace) -> int:
    import grpc

    from hub._proto.ackhub.v1 import trace_service_pb2 as pb
    from hub._proto.ackhub.v1 import trace_service_pb2_grpc as pb_grpc

    channel, metadata = _channel_and_metadata(args)
    with channel:
        stub = pb_grpc.TraceServiceStub(channel)
        try:
            found = stub.ListRecords(
                pb.ListRecordsRequest(declaration_number=args.declaration_number, page_size=100),
                metadata=metadata,
                timeout=30,
            )
            if not found.records:
                print(f"no records of yours carry declaration number {args.declaration_number}")
                return 1
            for item in reversed(found.records):  # oldest first
                traced = stub.TraceRecord(
                    pb.TraceRecordRequest(record_id=item.record.record_id), metadata=metadata, timeout=30
                )
                print("\n".join(format_timeline(traced)))
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def _token_issue(args: argparse.Namespace) -> int:
    import time

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from hub.auth.jwt import issue, issue_token
    from hub.signing import load_private_key

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
    import json

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hub.auth.jwt import jwk
    from hub.auth.pki import write_secret
    from hub.signing import private_key_pem

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
        "verify", help="recompute the log from the database and check it against the signed checkpoints"
    )
    verify.add_argument("--config", required=True, help="the hub's TOML configuration")
    verify.add_argument("--database-url", help="overrides [server].database_url")
    verify.add_argument(
        "--public-key", help="file with the hub's checkpoint public key (default: from config)"
    )
    verify.set_defaults(run=_audit_verify)

    proof = commands.add_parser("proof", help="delivery proofs an enterprise can verify offline")
    proof_commands = proof.add_subparsers(dest="proof_command", metavar="ACTION", required=True)
    check = proof_commands.add_parser("verify", help="check a delivery proof file, with no server")
    check.add_argument("file")
    check.add_argument("--hub-key", help="the hub's checkpoint public key (base64 or PEM) to pin")
    check.set_defaults(run=_proof_verify)
    get = proof_commands.add_parser("get", help="download the delivery proof of one of your records")
    get.add_argument("record_id")
    get.add_argument("--out", default="proof.json")
    _client_options(get)
    get.set_defaults(run=_proof_get)

    trace = commands.add_parser("trace", help="print who received your declaration's records, and when")
    trace.add_argument("declaration_number")
    _client_options(trace)
    trace.set_defaults(run=_trace)

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


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:7443", help="the hub's gRPC address")
    parser.add_argument("--token", help=f"enterprise JWT (default: ${TOKEN_ENV})")
