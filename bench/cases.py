"""What cases between parties cost (issue 19): a hub in this process (SQLite in a temporary folder, or
`--postgres URL`), `--records` released declarations that fx acknowledges RECEIVED, then one NOT_RECEIVED
case per record opened by the exporter over real gRPC (each attaches fx's signed acknowledgement and the
record's delivery proof), one answer from fx each, a page of fx's cases, and the deadline sweep once every
case missed its deadline. Prints latency percentiles and the sweep's time; asserts nothing.

    .venv/bin/python -m bench.cases [--records 300] [--postgres postgresql://postgres@127.0.0.1:5432/cases_bench]

Uses the test harness (tests/harness.py) for the hub and the agencies' keys.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock, SystemClock
from ackhub.v1 import case_service_pb2 as pb
from ackhub.v1 import case_service_pb2_grpc as pb_grpc
from tests.harness import Inbox, start_hub, wait_for
from tests.records import declaration
from tests.security_data import ALPHA, TYPE, bearer, write_jwks


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<22} n={len(ordered):<5} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cases-bench-"))
    url = args.postgres or f"sqlite:///{folder / 'hub.db'}"
    clock = ManualClock(SystemClock().now_ms())

    def edit(config: dict[str, Any]) -> None:
        config["auth"] = {"jwks_file": str(write_jwks(folder / "jwks.json"))}

    hub = start_hub(url, clock=clock, edit=edit)
    try:
        inbox = Inbox(lambda d: Verdict.received())
        start_subscription(hub.agency("fx", clock=clock), inbox)
        customs = hub.agency("customs")
        records = []
        for i in range(args.records):
            number = f"0202202605{i:08d}"
            receipt = customs.publish(
                TYPE, declaration(number, ALPHA), subject_uscc=ALPHA, declaration_number=number,
                request_id=str(uuid.uuid4()),
            )  # fmt: skip
            records.append(receipt.record_id)
        wait_for(lambda: len(inbox.ids()) >= args.records, timeout=120, what="fx receiving every record")
        stub = pb_grpc.CaseServiceStub(hub.channel)
        exporter, fx = bearer(clock, "enterprise", ALPHA), bearer(clock, "agency", "fx")
        opened, cases = [], []
        for record_id in records:
            request = pb.OpenCaseRequest(
                kind=pb.CASE_KIND_NOT_RECEIVED,
                record=pb.RecordSubject(record_id=record_id, recipient="fx"),
                text="SAFE says it never arrived",
                request_id=str(uuid.uuid4()),
            )
            start = time.perf_counter()
            cases.append(stub.OpenCase(request, metadata=exporter).case.case_id)
            opened.append((time.perf_counter() - start) * 1000)
        got = [timed(partial(stub.GetCase, pb.GetCaseRequest(case_id=c), metadata=exporter)) for c in cases]
        answered = [
            timed(
                partial(
                    stub.AddCaseMessage, pb.AddCaseMessageRequest(case_id=c, text="found it"), metadata=fx
                )
            )
            for c in cases
        ]
        listed = [
            timed(lambda: stub.ListCases(pb.ListCasesRequest(page_size=50), metadata=fx)) for _ in range(50)
        ]
        clock.advance(6 * 86_400_000)
        assert hub.server.cases is not None
        start = time.perf_counter()
        told = hub.run(hub.server.cases.sweep(), timeout=600)
        swept = (time.perf_counter() - start) * 1000
        print(f"store: {'PostgreSQL' if args.postgres else 'SQLite'}, {args.records} records and cases")
        for name, samples in (
            ("OpenCase (+evidence)", opened),
            ("GetCase", got),
            ("AddCaseMessage", answered),
            ("ListCases (fx, 50)", listed),
        ):
            print(summary(name, samples))
        print(
            f"deadline sweep: {len(told)} missed deadlines in {swept:.0f} ms ({swept / max(len(told), 1):.2f} ms each)"
        )
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
