"""What gRPC and the signatures alone cost a record, one record per call: the floor under the hub's CPU per
record (issue 16 item 3 asks for at most 1.5 ms at 200 records/s offered). Prints figures; asserts nothing.

A bare `grpc.aio` server — the hub's server library, on the same loopback, with no store, no audit log and
no routing — runs in its own process and carries the messages one ackhub record needs when published one by
one (bench/exchange.py's workload):

- one unary call, customs's publish (~1.2 KiB in, a ~150 B receipt out);
- for each of two recipients, on its open bidirectional stream: the delivery (~1.4 KiB out), the signed
  acknowledgement (~250 B in) and its result (~80 B out) — six stream messages a record.

Tax answers RECEIVED then ACCEPTED in one message here, as bench/exchange.py's agencies do, so the message
count is the hub's. Publishers are threads of this process with a channel each, waiting for every answer
(4 at full speed, 16 at the offered rate); the agencies' stream readers are threads too. The server
process's CPU (from /proc) over each phase, per record, is the transport's share; beside it, in this
process, Ed25519 verification (cryptography) of the three acknowledgement signatures a record carries.
Compare with `server CPU s` ÷ records of `bench.exchange` on the same machine.

    .venv/bin/python -m bench.transport                        # 5000 at full speed, then 4000 at 200/s
    .venv/bin/python -m bench.transport --records 2000 --offered-records 1000 --offered-rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.exchange import process_cpu_seconds

SERVICE = "bench.transport.Floor"
PUBLISH = f"/{SERVICE}/Publish"
SUBSCRIBE = f"/{SERVICE}/Subscribe"
RECIPIENTS = ("tax", "fx")
SIZES = {"publish": 1200, "receipt": 150, "delivery": 1400, "ack": 250, "result": 80}
SIGNATURES_PER_RECORD = 3  # tax RECEIVED and ACCEPTED, fx RECEIVED


def _identity(message: bytes) -> bytes:
    return message


# --- the server (its own process) ---------------------------------------------------------------------


async def _serve(port_file: Path) -> None:
    streams: dict[str, asyncio.Queue[bytes]] = {}  # each recipient's open stream (the newest)

    async def publish(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        delivery = request[:8] + b"d" * (SIZES["delivery"] - 8)  # the record's id, then the rest
        for outbox in streams.values():
            outbox.put_nowait(delivery)
        return request[:8] + b"r" * (SIZES["receipt"] - 8)

    async def subscribe(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        agency = dict(context.invocation_metadata())["agency"]
        outbox: asyncio.Queue[bytes] = asyncio.Queue()
        streams[agency] = outbox

        async def answer() -> None:
            async for ack in requests:
                outbox.put_nowait(ack[:8] + b"R" * (SIZES["result"] - 8))

        reader = asyncio.create_task(answer())
        try:
            yield bytes(8) + b"h"  # subscribed: the agency may let the publishers start
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()
            if streams.get(agency) is outbox:
                del streams[agency]

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Publish": grpc.unary_unary_rpc_method_handler(publish, _identity, _identity),
                    "Subscribe": grpc.stream_stream_rpc_method_handler(subscribe, _identity, _identity),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(port_file.write_text, str(port))
    await server.wait_for_termination()


# --- the load (this process) --------------------------------------------------------------------------


class Agency:
    """One recipient's stream: acknowledges every delivery at once; counts the results per record."""

    def __init__(
        self, target: str, agency: str, results: dict[bytes, int], closed: threading.Condition
    ) -> None:
        self.channel = grpc.insecure_channel(target)
        self.acks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.results, self.closed = results, closed
        self.subscribed = threading.Event()
        call = self.channel.stream_stream(SUBSCRIBE, _identity, _identity)
        self.stream = call(self._requests(), metadata=(("agency", agency),))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _requests(self) -> Iterator[bytes]:
        while (ack := self.acks.get()) is not None:
            yield ack

    def _read(self) -> None:
        try:
            for message in self.stream:
                if message[8:9] == b"h":
                    self.subscribed.set()
                elif message[8:9] == b"d":  # a delivery: acknowledge it
                    self.acks.put(message[:8] + b"a" * (SIZES["ack"] - 8))
                else:  # a result
                    with self.closed:
                        self.results[message[:8]] = self.results.get(message[:8], 0) + 1
                        self.closed.notify_all()
        except grpc.RpcError:
            pass  # cancelled at the end

    def close(self) -> None:
        self.acks.put(None)
        self.stream.cancel()
        self.channel.close()


def run_phase(target: str, pid: int, records: int, threads: int, rate: float, first: int) -> dict[str, float]:
    """Publish `records` records (numbered from `first`) from `threads` threads, at `rate` per second (0:
    as fast as answers come), until each has both recipients' results; the server's CPU per record."""
    results: dict[bytes, int] = {}
    closed = threading.Condition()  # notified at each result, by either recipient's reader
    agencies = [Agency(target, agency, results, closed) for agency in RECIPIENTS]
    for agency in agencies:
        if not agency.subscribed.wait(timeout=10):
            raise RuntimeError("a recipient's stream did not open")
    channels = [grpc.insecure_channel(target) for _ in range(threads)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    numbers = iter(range(first, first + records))
    numbers_lock = threading.Lock()
    started = time.perf_counter()

    def publisher(channel: grpc.Channel) -> None:
        publish = channel.unary_unary(PUBLISH, _identity, _identity)
        while True:
            with numbers_lock:
                number = next(numbers, None)
            if number is None:
                return
            if rate:
                delay = started + (number - first) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            publish(number.to_bytes(8, "big") + b"p" * (SIZES["publish"] - 8), timeout=30)

    cpu_before = process_cpu_seconds(pid)
    workers = [threading.Thread(target=publisher, args=(channel,)) for channel in channels]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with closed:
        if not closed.wait_for(
            lambda: sum(1 for seen in results.values() if seen == len(RECIPIENTS)) >= records, timeout=60
        ):
            raise RuntimeError("not every record got both recipients' results within 60 s")
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds(pid) - cpu_before
    for agency in agencies:
        agency.close()
    for channel in channels:
        channel.close()
    return {"records": records, "elapsed": elapsed, "cpu": cpu, "cpu_ms_per_record": cpu / records * 1000}


def verify_us(rounds: int = 2000) -> float:
    """Ed25519 verification of one ~250 B acknowledgement text, in µs (cryptography, best of 3)."""
    key = Ed25519PrivateKey.generate()
    text = b"ackhub-ack-v1\n" + b"x" * 236
    signature, public = key.sign(text), key.public_key()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(rounds):
            public.verify(signature, text)
        best = min(best, time.process_time() - start)
    return best / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--records", type=int, default=5000, help="records at full speed (default 5000)")
    parser.add_argument(
        "--offered-records", type=int, default=4000, help="records at the offered rate (4000)"
    )
    parser.add_argument("--offered-rate", type=float, default=200.0, help="records/s offered (default 200)")
    parser.add_argument("--publishers", type=int, default=4, help="publisher threads at full speed (4)")
    parser.add_argument("--offered-publishers", type=int, default=16, help="publisher threads offered (16)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process: port file
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0

    with tempfile.TemporaryDirectory(prefix="ackhub-transport-") as folder:
        port_file = Path(folder) / "port"
        server = subprocess.Popen([sys.executable, "-m", "bench.transport", "--serve", str(port_file)])
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the bare gRPC server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            target = f"127.0.0.1:{port_file.read_text()}"
            run_phase(target, server.pid, 200, args.publishers, 0, first=0)  # warm-up
            print(
                f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, grpcio {grpc.__version__}"
            )
            print("per record: 1 unary call + 6 stream messages on 2 streams (bench/exchange.py's shape)\n")
            phases = []
            if args.records:
                print(f"full speed: {args.records} records from {args.publishers} threads …", file=sys.stderr)
                phases.append(
                    ("full speed", run_phase(target, server.pid, args.records, args.publishers, 0, 10**6))
                )
            if args.offered_records and args.offered_rate:
                print(f"offered: {args.offered_records} at {args.offered_rate:g}/s …", file=sys.stderr)
                offered = run_phase(
                    target,
                    server.pid,
                    args.offered_records,
                    args.offered_publishers,
                    args.offered_rate,
                    2 * 10**6,
                )
                phases.append((f"{args.offered_rate:g} records/s offered", offered))
        finally:
            server.terminate()
            server.wait(timeout=10)
    signatures_ms = verify_us() * SIGNATURES_PER_RECORD / 1000
    print(f"{'':<44}{'records/s':>11}{'server CPU ms/record':>22}{'+ signatures':>14}")
    for name, phase in phases:
        per_record = phase["cpu_ms_per_record"]
        print(
            f"{'bare grpc.aio, ' + name:<44}{phase['records'] / phase['elapsed']:>11.1f}"
            f"{per_record:>22.3f}{per_record + signatures_ms:>14.3f}"
        )
    print(
        f"\nEd25519 verification: {signatures_ms / SIGNATURES_PER_RECORD * 1000:.1f} µs a signature, "
        f"{SIGNATURES_PER_RECORD} a record"
    )
    for name, phase in phases:
        floor = phase["cpu_ms_per_record"] + signatures_ms
        print(f"floor ÷ issue 16's 1.5 ms budget, {name}: {floor / 1.5:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
