"""Permit verification benchmark: single verifications per second with p50/p99 latency, and goods lines per
second through VerifyDeclaration.

A real hub (`ackhub serve`) runs in its own process on loopback with a fresh database; the commerce ministry
registers a signed import licence; customs then verifies from `--concurrency` concurrent callers. Every
verification is stored and audited by the hub, as in production.

    .venv/bin/python -m bench.permits                                  # SQLite
    .venv/bin/python -m bench.permits --database-url postgresql://postgres@127.0.0.1:5432/bench_permits
"""

# The repository goes on the path before `hub` is imported (run as a script, only bench/ is on it).

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.acks import public_key_base64
from ackhub.core.permit_document import PermitDocument, PermitLine
from ackhub.hub import launch
from ackhub.hub.api.permits import signed_message
from ackhub.v1 import permit_service_pb2 as pb
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc

HOLDER = "91110000600037341L"
CUSTOMS = (("x-ackhub-agency", "customs"),)


def _config(folder: Path, database_url: str, port: int, commerce: Ed25519PrivateKey) -> Path:
    customs = Ed25519PrivateKey.generate()
    text = f"""
[server]
listen = "127.0.0.1:{port}"
database_url = "{database_url}"
log_level = "warning"

[[agencies]]
id = "customs"
name = "Customs"
kind = "customs"
keys = [{{ id = "customs-1", public_key = "{public_key_base64(customs.public_key())}" }}]

[[agencies]]
id = "commerce"
name = "MOFCOM"
kind = "commerce"
keys = [{{ id = "commerce-1", public_key = "{public_key_base64(commerce.public_key())}" }}]

[permits]
issuers = [{{ id = "commerce", adapter = "commerce" }}]

[[routes]]
record_type = "customs.licence_usage.reported"
publishers = ["customs"]
recipients = [{{ agency = "commerce" }}]
"""
    path = folder / "bench.toml"
    path.write_text(text)
    return path


def _licence(today: date) -> PermitDocument:
    start = date(today.year, 1, 1)
    return PermitDocument(
        number=f"{today.year % 100:02d}-AA-000001",
        kind="commerce.import_licence",
        issuer="commerce",
        version=1,
        holder_uscc=HOLDER,
        customs_office="0202",
        issue_date=start,
        valid_from=start,
        valid_to=date(today.year, 12, 31),
        multi_batch=True,
        lines=tuple(PermitLine(i, f"870323{i:02d}", 10**12, "辆") for i in range(1, 21)),
    )


def _goods(number: str, item: int) -> pb.GoodsLine:
    return pb.GoodsLine(
        item_number=item,
        permit_number=number,
        permit_kind="commerce.import_licence",
        hs_code=f"870323{item % 20 + 1:02d}10",
        quantity="1.5",
        unit="辆",
    )


async def _single(target: str, number: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.PermitServiceStub(channel)
        request = pb.VerifyPermitRequest(declarant_uscc=HOLDER, customs_office="0202", line=_goods(number, 1))
        await stub.VerifyPermit(request, metadata=CUSTOMS)  # warm up
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                answer = await stub.VerifyPermit(request, metadata=CUSTOMS, timeout=30)
                latencies.append(time.perf_counter() - started)
                assert answer.result.verdict == pb.VERDICT_VALID

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def _declarations(target: str, number: str, count: int, lines: int, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.PermitServiceStub(channel)
        request = pb.VerifyDeclarationRequest(
            declarant_uscc=HOLDER,
            customs_office="0202",
            lines=[_goods(number, i) for i in range(1, lines + 1)],
        )
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                answer = await stub.VerifyDeclaration(request, metadata=CUSTOMS, timeout=120)
                assert answer.verdict == pb.VERDICT_VALID and len(answer.results) == lines

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--verifications", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--declarations", type=int, default=20)
    parser.add_argument("--lines", type=int, default=500, help="goods lines per declaration")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    commerce = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        config = _config(Path(tmp), url, port, commerce)
        hub = launch.HubProcess(config, Path(tmp) / "hub.log", target=f"127.0.0.1:{port}")
        hub.start(30)
        try:
            target = f"127.0.0.1:{port}"
            channel = grpc.insecure_channel(target)
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = pb_grpc.PermitServiceStub(channel)
            document = _licence(date.today())
            signature = commerce.sign(document.canonical_text("commerce-1"))
            stub.CreatePermit(
                pb.CreatePermitRequest(
                    request_id=str(uuid.uuid4()), permit=signed_message(document, "commerce-1", signature)
                ),
                metadata=(("x-ackhub-agency", "commerce"),),
                timeout=30,
            )
            elapsed, latencies = asyncio.run(
                _single(target, document.number, args.verifications, args.concurrency)
            )
            latencies.sort()
            declared = asyncio.run(
                _declarations(
                    target, document.number, args.declarations, args.lines, min(args.concurrency, 4)
                )
            )
            channel.close()
        finally:
            hub.stop(15)
    figures = {
        "backend": url.split(":", 1)[0],
        "verifications": args.verifications,
        "concurrency": args.concurrency,
        "verifications_per_s": round(args.verifications / elapsed),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
        "declarations": args.declarations,
        "lines_per_declaration": args.lines,
        "goods_lines_per_s": round(args.declarations * args.lines / declared),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['backend']}: {figures['verifications_per_s']:,} single verifications/s "
            f"(p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, {args.concurrency} concurrent); "
            f"{figures['goods_lines_per_s']:,} goods lines/s through VerifyDeclaration "
            f"({args.lines} lines per declaration)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
