"""How long the enterprise notifications take: a hub on loopback (SQLite or PostgreSQL), `--subscriptions`
webhook subscriptions of one enterprise, `--records` of its records answered by tax (RECEIVED, ACCEPTED)
and fx (REJECTED, which escalates): four announced events each. Then, timed apart, the passes that make the
notifications from the audit log (the outbox) and the passes that send them to a real HTTP endpoint on
loopback. Also: the rate limiter's cost per sign-in attempt, and a proof's check on the public page.

    .venv/bin/python -m bench.notifications --records 200 --subscriptions 5 --backend sqlite
    .venv/bin/python -m bench.notifications --records 200 --subscriptions 5 --backend postgres
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock, SystemClock
from ackhub.hub.notifications import outbox
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import subscription_service_pb2 as pb
from ackhub.v1 import subscription_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2
from tests.conftest import fresh_postgres
from tests.harness import Inbox, wait_for
from tests.notify_kit import Endpoint
from tests.portal_kit import enterprise_token, portal_url, publish, start_portal_hub
from tests.security_data import ALPHA, bearer


def run(args: argparse.Namespace, database_url: str, folder: Path) -> dict[str, Any]:
    clock = ManualClock(SystemClock().now_ms())
    hub = start_portal_hub(folder, clock, database_url, rate_per_minute=1e6, rate_burst=1_000_000)
    endpoint = Endpoint()
    url = endpoint.start()
    try:
        stub = pb_grpc.SubscriptionServiceStub(hub.channel)
        for _ in range(args.subscriptions):
            stub.CreateSubscription(
                pb.CreateSubscriptionRequest(channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK, target=url),
                metadata=bearer(clock, "enterprise", ALPHA),
            )
        start_subscription(
            hub.agency("tax", clock=clock), Inbox(lambda d: [Verdict.received(), Verdict.accept()])
        )
        start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.reject("mismatch")))
        records = [publish(hub) for _ in range(args.records)]
        final = {types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_REJECTED}

        def done(record_id: str) -> bool:
            found = hub.exchange_stub.GetRecord(
                exchange_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
            )
            return {d.state for d in found.deliveries} == final

        wait_for(lambda: all(done(r) for r in records), timeout=300, what="every record answered")
        assert hub.server.ledger is not None and hub.server.notifications is not None
        hub.run(hub.server.db.run(hub.server.ledger.sequence))
        db, names = hub.server.db, {"tax": "Tax", "fx": "FX"}
        started = time.perf_counter()
        made = 0
        while True:
            step = hub.run(db.run(outbox.fan_out, db, clock.now_ms(), names))
            made += step
            if not hub.run(db.run(outbox.pending_leaves, db)):
                break
        fan_out_s = time.perf_counter() - started
        started = time.perf_counter()
        sent = 0
        while True:
            batch = hub.run(hub.server.notifications.run_once()).sent
            if not batch:
                break
            sent += len(batch)
        send_s = time.perf_counter() - started
        base = portal_url(hub)
        with httpx.Client() as client:
            started = time.perf_counter()
            for _ in range(args.signins):
                client.post(base + "/signin", data={"token": "not-a-token"})
            signin_ms = (time.perf_counter() - started) * 1000 / args.signins
            client.post(base + "/signin", data={"token": enterprise_token(clock)})
            document = client.get(f"{base}/records/{records[0]}/proof.json").content
            started = time.perf_counter()
            for _ in range(args.signins):
                client.post(base + "/verify", files={"proof": ("proof.json", document)})
            verify_ms = (time.perf_counter() - started) * 1000 / args.signins
        return {
            "notifications": made,
            "fan_out_s": round(fan_out_s, 3),
            "made_per_s": round(made / fan_out_s),
            "sent": sent,
            "send_s": round(send_s, 3),
            "sent_per_s": round(sent / send_s),
            "refused_signin_ms": round(signin_ms, 2),
            "proof_check_ms": round(verify_ms, 2),
            "endpoint_requests": len(endpoint.requests()),
        }
    finally:
        endpoint.stop()
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument(
        "--signins", type=int, default=100, help="requests timed for sign-in and proof checks"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.backend == "postgres":
            with fresh_postgres() as url:
                print(run(args, url, Path(folder)))
        else:
            print(run(args, f"sqlite:///{folder}/hub.db", Path(folder)))


if __name__ == "__main__":
    main()
