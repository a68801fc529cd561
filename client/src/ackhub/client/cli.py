"""`ackhub-client`: what a partner agency or an enterprise runs from the command line, with no server
installed — trace its records, download a delivery proof and check it offline, run a test agency that
subscribes and acknowledges, and run a witness of the hub's audit log.

    ackhub-client trace 020220260525641690 --target hub.example:7443 --token "$JWT"
    ackhub-client proof get REC_ID --out proof.json && ackhub-client proof verify proof.json --hub-key KEY
    ackhub-client test-agency --agency tax --key-id tax-k1 --key-file tax-k1.pem --target 127.0.0.1:7443
    ackhub-client witness serve --config witness.toml

The server's `ackhub` command offers the same `trace` and `proof` commands (this module registers them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import grpc

from ackhub.audit.acks import load_public_key
from ackhub.audit.note import NoteError, parse_vkey
from ackhub.audit.proofs import WitnessPolicy, verify_delivery_proof
from ackhub.audit.times import to_rfc3339_ms
from ackhub.client.agency import AgencyClient, Delivery, Verdict
from ackhub.v1 import trace_service_pb2 as pb
from ackhub.v1 import trace_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2

TOKEN_ENV = "ACKHUB_TOKEN"


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


def key_argument(value: str) -> str:
    """A verifier key given as itself or as a file that holds it."""
    path = Path(value)
    return path.read_text().strip() if path.is_file() else value


def _proof_verify(args: argparse.Namespace) -> int:
    try:
        witnesses = tuple(parse_vkey(key_argument(k)) for k in args.witness_key)
    except (NoteError, OSError) as error:
        print(f"refused: a --witness-key: {error}", file=sys.stderr)
        return 2
    quorum = args.quorum if args.quorum is not None else len(witnesses)
    if quorum > len(witnesses):
        print(f"refused: --quorum {quorum} but only {len(witnesses)} --witness-key given", file=sys.stderr)
        return 2

    try:
        document: Any = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read {args.file}: {exc}")
        return 1
    trusted = load_public_key(args.hub_key) if args.hub_key else None
    verdict = verify_delivery_proof(document, trusted, WitnessPolicy(witnesses, quorum))
    for line in verdict.statements:
        print(f"  ✓ {line}")
    for line in verdict.failures:
        print(f"  ✗ {line}")
    print("VERIFIED: every signature and proof in the document checks out." if verdict.ok else "FAILED")
    return 0 if verdict.ok else 1


def _channel_and_metadata(args: argparse.Namespace) -> tuple[Any, tuple[tuple[str, str], ...]]:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"a token is needed: --token or ${TOKEN_ENV} (ask the hub's operator)")
    return grpc.insecure_channel(args.target), (("authorization", f"Bearer {token}"),)


def _proof_get(args: argparse.Namespace) -> int:
    channel, metadata = _channel_and_metadata(args)
    with channel:
        answer = pb_grpc.TraceServiceStub(channel).GetDeliveryProof(
            pb.GetDeliveryProofRequest(record_id=args.record_id), metadata=metadata, timeout=30
        )
    Path(args.out).write_bytes(answer.document)
    print(f"delivery proof written to {args.out}; check it with: ackhub-client proof verify {args.out}")
    return 0


def format_timeline(traced: Any) -> list[str]:
    """A `TraceRecordResponse` as lines for a person to read."""
    record = traced.record
    lines = [
        f"record {record.record_id}  {record.record_type}",
        f"  declaration {record.declaration_number or '-'}  digest {record.digest}",
    ]
    for recipient in traced.recipients:
        delivery = recipient.delivery
        state = _enum_name(types_pb2.DeliveryState, delivery.state, "DELIVERY_STATE_")
        if delivery.closed:
            done = f"closed by {_enum_name(types_pb2.AckStatus, delivery.closed_by, 'ACK_STATUS_')}"
        else:
            done = "open: waiting for " + (
                "RECEIVED"
                if delivery.required_level == types_pb2.ACK_LEVEL_RECEIVED
                else "ACCEPTED or REJECTED"
            )
        lines.append(f"  → {recipient.agency_name} ({recipient.agency_id}): {state}, {done}")
        for event in recipient.events:
            when = to_rfc3339_ms(event.event_time.ToMilliseconds())
            lines.append(f"      {when}  {event.detail}  [{event.actor}]")
    return lines


def _trace(args: argparse.Namespace) -> int:
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


def _test_agency(args: argparse.Namespace) -> int:
    """Subscribe as the agency and answer every delivery: RECEIVED, then the chosen business answer."""
    client = AgencyClient.from_key_file(args.target, args.agency, args.key_id, args.key_file)
    answered = 0
    lock = threading.Lock()

    def handle(delivery: Delivery) -> list[Verdict]:
        nonlocal answered
        record = delivery.record
        if "sha256:" + hashlib.sha256(record.payload).hexdigest() != record.digest:
            verdicts = [Verdict.received(), Verdict.reject("payload does not match its digest")]
        elif args.answer == "received":
            verdicts = [Verdict.received()]
        elif args.answer == "reject":
            verdicts = [Verdict.received(), Verdict.reject(args.reason or "rejected by the test agency")]
        else:
            verdicts = [Verdict.received(), Verdict.accept(args.reason)]
        with lock:
            answered += 1
            count = answered
        print(f"{delivery.delivery_id} {record.record_type} → {args.answer}", flush=True)
        if args.stop_after and count >= args.stop_after:
            # let the stream carry these answers, then stop (unconfirmed ones come again next time)
            threading.Timer(1.0, client.close).start()
        return verdicts

    print(f"subscribed to {args.target} as {args.agency}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        client.subscribe_forever(handle)
    except KeyboardInterrupt:
        client.close()
    return 0


def add_commands(commands: Any) -> None:
    """Register `proof`, `trace` (and, for `ackhub-client` alone, `test-agency`) on a CLI's subparsers."""
    proof = commands.add_parser("proof", help="delivery proofs an enterprise can verify offline")
    proof_commands = proof.add_subparsers(dest="proof_command", metavar="ACTION", required=True)
    check = proof_commands.add_parser("verify", help="check a delivery proof file, with no server")
    check.add_argument("file")
    check.add_argument("--hub-key", help="the hub's checkpoint public key (base64 or PEM) to pin")
    check.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a trusted witness's verifier key (or file); repeatable",
    )
    check.add_argument("--quorum", type=int, help="cosignatures required of those witnesses (default: all)")
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


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:7443", help="the hub's gRPC address")
    parser.add_argument("--token", help=f"enterprise JWT (default: ${TOKEN_ENV})")


def build_parser() -> argparse.ArgumentParser:
    from ackhub.client.witness.cli import add_commands as add_witness_commands

    parser = argparse.ArgumentParser(
        prog="ackhub-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(commands)
    agency = commands.add_parser(
        "test-agency", help="subscribe as an agency and acknowledge every delivery (signed)"
    )
    agency.add_argument("--target", default="127.0.0.1:7443", help="the hub's gRPC address")
    agency.add_argument("--agency", required=True, help="the agency id the hub knows you by")
    agency.add_argument("--key-id", required=True, help="the id of your registered signing key")
    agency.add_argument("--key-file", required=True, help="your Ed25519 private key (PEM)")
    agency.add_argument(
        "--answer",
        choices=("accept", "reject", "received"),
        default="accept",
        help="the answer after RECEIVED",
    )
    agency.add_argument("--reason", default="", help="the reason sent with ACCEPTED or REJECTED")
    agency.add_argument(
        "--stop-after", type=int, default=0, help="exit after this many deliveries (0: never)"
    )
    agency.set_defaults(run=_test_agency)
    add_witness_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
