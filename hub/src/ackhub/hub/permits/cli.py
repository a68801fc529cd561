"""`ackhub adapters list`, `ackhub permit verify` and `ackhub permit show`: readable verdicts from a hub,
over gRPC with the development identity headers (`hub.auth.identity`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

EXAMPLES = """examples:
  ackhub adapters list
  ackhub permit verify 26-AA-204966 --kind commerce.import_licence --uscc 91110000600037341L \\
      --office 0202 --hs 8703234210 --quantity 10 --unit 辆
  ackhub permit show 26-AA-204966
"""


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str]]:
    from ackhub.client.headers import AGENCY_HEADER, OPERATOR_HEADER

    return ((OPERATOR_HEADER, args.operator),) if args.operator else ((AGENCY_HEADER, args.agency),)


def _refused(error: grpc.RpcError) -> int:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    print(f"refused: {error.code().name}: {error.details()}", file=sys.stderr)
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    return 2


def _adapters_list(args: argparse.Namespace) -> int:
    from ackhub.adapters.loader import load

    adapters = load()
    for kind, loaded in sorted(adapters.loaded.items()):
        adapter = loaded.adapter
        print(f"{kind:<10} {adapter.title}")
        print(f"{'':<10} from {loaded.source}")
        for record_type in adapter.record_types():
            print(f"{'':<10} {record_type.direction} {record_type.name}")
        for permit_kind in adapter.permit_kinds():
            print(f"{'':<10} issues {permit_kind.code} ({permit_kind.title})")
    for name, why in sorted(adapters.broken.items()):
        print(f"{name:<10} BROKEN: {why}")
    return 1 if adapters.broken else 0


def format_result(number: str, kind: str, result: Any) -> str:
    """A verification answer as a few readable lines."""
    from ackhub.v1 import permit_service_pb2 as pb

    valid = result.verdict == pb.VERDICT_VALID
    head = f"{kind} {number}" + (f" (version {result.permit_version})" if result.permit_version else "")
    lines = [f"{head}: {'VALID' if valid else 'NOT VALID'}"]
    for reason, detail in zip(result.reasons, result.details, strict=True):
        lines.append(
            f"  ✗ {pb.VerificationReason.Name(reason).removeprefix('VERIFICATION_REASON_')}: {detail}"
        )
    if result.permit_line_number:
        lines.append(
            f"  permit line {result.permit_line_number}: {result.remaining} left; {result.uses_left} use(s) left"
        )
    lines.append(f"  check {result.check_id}")
    return "\n".join(lines)


def _permit_verify(args: argparse.Namespace) -> int:
    from ackhub.v1 import permit_service_pb2 as pb
    from ackhub.v1 import permit_service_pb2_grpc as pb_grpc

    request = pb.VerifyPermitRequest(
        declarant_uscc=args.uscc,
        customs_office=args.office,
        date=args.date or "",
        declaration_number=args.declaration or "",
        line=pb.GoodsLine(
            item_number=1,
            permit_number=args.number,
            permit_kind=args.kind,
            hs_code=args.hs,
            quantity=args.quantity,
            unit=args.unit,
        ),
    )
    with grpc.insecure_channel(args.target) as channel:
        try:
            answer = pb_grpc.PermitServiceStub(channel).VerifyPermit(
                request, metadata=_metadata(args), timeout=args.timeout
            )
        except grpc.RpcError as error:
            return _refused(error)
    print(format_result(args.number, args.kind, answer.result))
    return 0 if answer.result.verdict == pb.VERDICT_VALID else 1


def format_permit(permit: Any) -> str:
    from ackhub.v1 import permit_service_pb2 as pb

    content = permit.current.content
    state = pb.PermitState.Name(permit.state).removeprefix("PERMIT_STATE_")
    source = pb.PermitSource.Name(permit.source).removeprefix("PERMIT_SOURCE_")
    lines = [
        f"{content.kind} {content.number}  version {content.version}  {state}  ({source.lower()})",
        f"  issuer {content.issuer}, signed with key {permit.current.key_id}",
        f"  holder {content.holder_uscc}; customs office {content.customs_office or 'any'}",
        f"  issued {content.issue_date}; valid {content.valid_from} to {content.valid_to}",
        f"  uses {permit.uses} of {permit.max_uses}",
    ]
    if permit.revoke_reason:
        lines.append(f"  revoked: {permit.revoke_reason}")
    for line, balance in zip(content.lines, permit.balances, strict=False):
        extra = f" [{line.origin_criterion}]" if line.origin_criterion else ""
        bulk = " bulk" if line.bulk else ""
        lines.append(
            f"  line {line.line_number}: HS {line.hs_code}{extra} {line.quantity} {line.unit}{bulk}; "
            f"drawn {balance.drawn}, remaining {balance.remaining}  {line.description}"
        )
    for version in permit.versions:
        lines.append(f"  version {version.version} by {version.created_by}, key {version.key_id}")
    return "\n".join(lines)


def _permit_show(args: argparse.Namespace) -> int:
    from ackhub.adapters.loader import load
    from ackhub.v1 import permit_service_pb2 as pb
    from ackhub.v1 import permit_service_pb2_grpc as pb_grpc

    kinds = [args.kind] if args.kind else sorted(load().permit_kinds)
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.PermitServiceStub(channel)
        for kind in kinds:
            try:
                answer = stub.GetPermit(
                    pb.GetPermitRequest(kind=kind, number=args.number),
                    metadata=_metadata(args),
                    timeout=args.timeout,
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND and not args.kind:
                    continue
                return _refused(error)
            print(format_permit(answer.permit))
            return 0
    print(f"no permit numbered {args.number!r} (tried {', '.join(kinds)})", file=sys.stderr)
    return 1


def add_commands(commands: Any) -> None:
    """Adds `adapters` and `permit` to the `ackhub` command line (`commands` is its subparsers)."""
    adapters = commands.add_parser("adapters", help="authority adapters")
    adapter_commands = adapters.add_subparsers(dest="adapters_command", metavar="ACTION", required=True)
    listing = adapter_commands.add_parser(
        "list", help="the adapters installed, where from, and what they handle"
    )
    listing.set_defaults(run=_adapters_list)

    permit = commands.add_parser(
        "permit", help="verify and show permits on a running hub", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    permit_commands = permit.add_subparsers(dest="permit_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default="127.0.0.1:7443", help="the hub's gRPC address")
    who = common.add_mutually_exclusive_group()
    who.add_argument("--agency", default="customs", help="ask as this agency (default: customs)")
    who.add_argument("--operator", help="ask as this operator instead")
    common.add_argument("--timeout", type=float, default=10.0)

    verify = permit_commands.add_parser("verify", parents=[common], help="does a permit cover a goods line?")
    verify.add_argument("number")
    verify.add_argument(
        "--kind", required=True, help="e.g. commerce.import_licence, origin.domestic_certificate"
    )
    verify.add_argument("--uscc", required=True, help="the declarant's USCC")
    verify.add_argument("--office", required=True, help="4-digit customs office")
    verify.add_argument("--hs", required=True, help="the declared HS code")
    verify.add_argument("--quantity", required=True)
    verify.add_argument("--unit", required=True)
    verify.add_argument("--date", help="YYYY-MM-DD (default: today)")
    verify.add_argument("--declaration", help="the declaration number, if it already draws on the permit")
    verify.set_defaults(run=_permit_verify)

    show = permit_commands.add_parser(
        "show", parents=[common], help="a permit, its balances and its versions"
    )
    show.add_argument("number")
    show.add_argument("--kind", help="default: try every kind the installed adapters know")
    show.set_defaults(run=_permit_show)
