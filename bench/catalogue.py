"""What checking payloads against the record type catalogue costs a publish (issue 21: at most 10 % of a
publish's CPU at 1 KiB). Prints figures and the ratio; asserts nothing.

1. In this process, per 1 KiB released export declaration: the hub's check (`Catalogue.check_payload`:
   json.loads + the compiled fastjsonschema verdict), jsonschema's 2020-12 validator alone (the
   alternative it replaced on the hot path), and the explanation of a refused payload (jsonschema, first
   10 violations).
2. A hub (`ackhub serve`, SQLite in a temporary folder, the catalogue on) taking `--records` publishes,
   one per call, from `--threads` clients, with no agency connected: the hub process's CPU time (from
   /proc) over the run, per publish.
3. The ratio: the check's CPU / the hub's CPU per publish.

    .venv/bin/python -m bench.catalogue [--records 3000] [--payload-bytes 1024] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from jsonschema import Draft202012Validator

from ackhub.adapters.loader import load
from ackhub.client.headers import AGENCY_HEADER
from ackhub.hub import launch
from ackhub.hub.demo import ENTERPRISES, Declarations
from ackhub.hub.exchange.catalogue import Catalogue, build
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import exchange_service_pb2_grpc as pb_grpc
from bench.exchange import process_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

RECORD_TYPE = "customs.export_declaration.released"


def payloads(count: int, size: int, seed: int) -> list[tuple[bytes, str, str]]:
    """(payload of about `size` bytes, exporter USCC, declaration number): the demo's declarations, padded
    with remarks to the size."""
    declarations = Declarations(random.Random(seed))
    made = []
    for _ in range(count):
        exporter, number, payload = declarations.next()
        document = json.loads(payload) | {"remarks": ""}
        unpadded = len(json.dumps(document, ensure_ascii=False).encode())
        document["remarks"] = "x" * max(0, size - unpadded)
        made.append((json.dumps(document, ensure_ascii=False).encode(), exporter.uscc, number))
    return made


def per_call_us(run: Callable[[bytes], object], items: list[bytes], rounds: int = 5) -> float:
    """The best of `rounds` passes over `items`, in microseconds of CPU per item."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            run(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def check_costs(catalogue: Catalogue, items: list[bytes]) -> dict[str, float]:
    version = catalogue.current(RECORD_TYPE)
    assert version is not None
    alone = Draft202012Validator(version.schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    broken = [item.replace(b'"hs_code": "', b'"hs_code": "x', 1) for item in items]
    assert all(version.violations(item) == [] for item in items)
    assert all(version.violations(item) for item in broken)
    return {
        "json.loads alone": per_call_us(json.loads, items),
        "the hub's check (json.loads + fastjsonschema)": per_call_us(
            lambda p: catalogue.check_payload(RECORD_TYPE, "application/json", p), items
        ),
        "jsonschema 2020-12 alone (json.loads + iter_errors)": per_call_us(
            lambda p: next(alone.iter_errors(json.loads(p)), None), items
        ),
        "a refused payload explained (first 10 violations)": per_call_us(version.violations, broken),
    }


def hub_config(folder: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ackhub.audit.acks import public_key_base64

    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        f'database_url = "sqlite:///{folder / "hub.db"}"',
        'log_level = "info"',
        "",
        "[limits]",
        "requests_per_second = 0.0",
        "",
    ]
    for agency in ("customs", "tax", "fx"):
        key = public_key_base64(Ed25519PrivateKey.generate().public_key())
        lines += ["[[agencies]]", f'id = "{agency}"', f'name = "{agency}"', f'kind = "{agency}"']
        lines += ["[[agencies.keys]]", f'id = "{agency}-1"', f'public_key = "{key}"', ""]
    lines += ["[[routes]]", f'record_type = "{RECORD_TYPE}"', 'publishers = ["customs"]', ""]
    for agency, level in (("tax", "BUSINESS"), ("fx", "RECEIVED")):
        lines += [
            "[[routes.recipients]]",
            f'agency = "{agency}"',
            f'ack_level = "{level}"',
            'deadline = "10m"',
            "",
        ]
    config = folder / "hub.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def _each(publish: Callable[[bytes, str, str], None], items: list[tuple[bytes, str, str]]) -> None:
    for item in items:
        publish(*item)


def hub_cpu_per_publish(records: list[tuple[bytes, str, str]], threads: int) -> tuple[float, float]:
    """(hub CPU µs per publish, publishes per second) for `records`, one per PublishRecord call."""
    with tempfile.TemporaryDirectory(prefix="ackhub-catalogue-bench-") as tmp:
        folder = Path(tmp)
        hub = launch.HubProcess(hub_config(folder), folder / "hub.log")
        hub.launch(append=False)
        try:
            port = 0
            deadline = time.monotonic() + 60
            while not port:
                hub.check_running()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not start:\n{hub.tail()}")
                found = re.search(
                    r'"port": (\d+), [^\n]*"event": "hub\.started"', hub.log.read_text(errors="replace")
                )
                port = int(found.group(1)) if found else 0
                time.sleep(0.05)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = pb_grpc.ExchangeServiceStub(channel)
            metadata = ((AGENCY_HEADER, "customs"),)

            def publish(payload: bytes, uscc: str, number: str) -> None:
                request = pb.PublishRecordRequest(
                    request_id=str(uuid.uuid4()),
                    record_type=RECORD_TYPE,
                    subject_uscc=uscc,
                    declaration_number=number,
                    content_type="application/json",
                    payload=payload,
                )
                stub.PublishRecord(request, metadata=metadata, timeout=30)

            for item in records[:100]:  # warm up: connections, caches, the first pages of the database
                publish(*item)
            work = records[100:]
            before, started = process_cpu_seconds(hub.pid), time.monotonic()
            chunks = [work[i::threads] for i in range(threads)]
            workers = [threading.Thread(target=_each, args=(publish, c)) for c in chunks]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed, used = time.monotonic() - started, process_cpu_seconds(hub.pid) - before
            channel.close()
            return used / len(work) * 1e6, len(work) / elapsed
        finally:
            hub.stop(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=3000, help="publishes to the hub (default 3000)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="payload size (default 1024)")
    parser.add_argument("--threads", type=int, default=4, help="publishing client threads (default 4)")
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    if args.records <= 100 or args.payload_bytes < 600 or args.threads < 1:
        parser.error("--records must be over 100, --payload-bytes at least 600, --threads at least 1")
    catalogue = build(load())
    records = payloads(args.records, args.payload_bytes, args.seed)
    sizes = [len(p) for p, _, _ in records]
    print(f"payloads: {len(records)} released export declarations, {min(sizes)}-{max(sizes)} bytes")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; exporters: {len(ENTERPRISES)}")
    print()
    costs = check_costs(catalogue, [p for p, _, _ in records[:500]])
    print("CPU per payload, in this process (best of 5 passes over 500 payloads):")
    for what, us in costs.items():
        print(f"  {what:<55} {us:8.1f} µs")
    print()
    per_publish, rate = hub_cpu_per_publish(records, args.threads)
    print(
        f"hub (ackhub serve, SQLite, catalogue on): {args.records - 100} publishes at {rate:.0f}/s from "
        f"{args.threads} threads, {per_publish:.0f} µs of hub CPU per publish"
    )
    check = costs["the hub's check (json.loads + fastjsonschema)"]
    alone = costs["jsonschema 2020-12 alone (json.loads + iter_errors)"]
    print()
    print(f"ratio: the check is {check / per_publish:.1%} of a publish's CPU (budget 10 %)")
    print(f"       jsonschema alone would be {alone / per_publish:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
