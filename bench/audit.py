"""Audit log throughput: events appended per second inside transactions shaped like the exchange's (a
group commit of many items, one event each), events sequenced into the tree per second, a checkpoint's
cost, proofs per second, and events verified per second by `audit verify`.

    .venv/bin/python -m bench.audit                       # SQLite in a temporary folder, 100k events
    .venv/bin/python -m bench.audit --events 20000 --database-url postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from ackhub.core.clock import SystemClock
from ackhub.hub.ledger import log
from ackhub.hub.ledger.keys import signing_key
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.ledger.verify import verify_log
from ackhub.hub.server import SEQUENCE_CHUNK
from ackhub.hub.store.db import Database


def append(db: Database, clock: SystemClock, start: int, events: int, batch: int) -> None:
    """`events` more events, `batch` to a transaction, numbered from `start`."""
    for first in range(start, start + events, batch):
        with db.transaction() as session:  # one group commit, as the exchange's Batcher makes
            for i in range(first, min(first + batch, start + events)):
                log.append(
                    session,
                    kind="delivery.attempt",
                    actor="system:hub",
                    time_ms=clock.now_ms(),
                    record_id=f"01900000-0000-7000-8000-{i:012d}",
                    delivery_id=f"01900000-0000-7000-9000-{i:012d}",
                    data={"attempt": 1, "connector": "stream", "session": "bench"},
                )


def run(url: str, events: int, batch: int) -> None:
    db = Database(url)
    db.migrate()
    clock = SystemClock()
    key, _ = signing_key(None, url)
    ledger = AuditLedger(db, key, "bench", clock)
    started = time.perf_counter()
    append(db, clock, 0, events, batch)
    appended = time.perf_counter() - started
    print(f"append    {events / appended:>10,.0f} events/s  ({events} events, {batch} per transaction)")

    # The running hub's job: a chunk at a time, each sequenced and added to the stored tree.
    started = time.perf_counter()
    chunks = 0
    while ledger.sequence_some(SEQUENCE_CHUNK) > 0:
        chunks += 1
    sequenced = time.perf_counter() - started
    print(
        f"sequence  {events / sequenced:>10,.0f} events/s  (in chunks of {SEQUENCE_CHUNK}, as the hub does: "
        f"{1000 * sequenced / chunks:.2f} ms a chunk)"
    )

    # All at once (what `audit verify` and a checkpoint after a pause do), over as many new events.
    append(db, clock, events, events, batch)
    started = time.perf_counter()
    size = ledger.sequence()
    sequenced = time.perf_counter() - started
    print(f"sequence  {events / sequenced:>10,.0f} events/s  (all at once; tree size {size})")

    started = time.perf_counter()
    checkpoint = ledger.checkpoint()
    print(
        f"checkpoint {1000 * (time.perf_counter() - started):>9,.0f} ms       (first: loads the tree cache)"
    )
    started = time.perf_counter()
    proofs = 200
    for index in range(0, checkpoint.tree_size, max(1, checkpoint.tree_size // proofs)):
        ledger.inclusion(index, checkpoint.tree_size)
    took = time.perf_counter() - started
    print(f"proofs    {proofs / took:>10,.0f} inclusion proofs/s (each with its event and checkpoint)")

    started = time.perf_counter()
    verdict = verify_log(db, key.public_key())
    verified = time.perf_counter() - started
    assert verdict.ok, verdict.summary()
    print(f"verify    {verdict.events / verified:>10,.0f} events/s  ({verdict.summary()})")
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256, help="events per transaction (the Batcher's max)")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    if args.database_url:
        run(args.database_url, args.events, args.batch)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{folder}/bench.db", args.events, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
