"""A tax bureau's receiving side with the Python SDK: subscribe, acknowledge RECEIVED then ACCEPTED.

    python examples/python/tax_agency.py --target 127.0.0.1:7443 --agency tax \
        --key-id tax-2026-01 --key-file keys/tax-2026-01.pem [--stop-after 10]
"""

from __future__ import annotations

import argparse
import hashlib
import threading

from ackhub.client import AgencyClient, Delivery, Verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:7443")
    parser.add_argument("--agency", default="tax")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument(
        "--stop-after", type=int, default=0, help="exit after this many deliveries (0: never)"
    )
    args = parser.parse_args()

    client = AgencyClient.from_key_file(args.target, args.agency, args.key_id, args.key_file)
    handled: set[str] = set()
    lock = threading.Lock()

    def handle(delivery: Delivery) -> list[Verdict]:
        record = delivery.record
        if "sha256:" + hashlib.sha256(record.payload).hexdigest() != record.digest:
            return [Verdict.received(), Verdict.reject("payload does not match its digest")]
        with lock:  # at least once: the same delivery id may come again; answer it again
            new = delivery.delivery_id not in handled
            handled.add(delivery.delivery_id)
        print(f"{'got' if new else 'again'} {delivery.delivery_id} {record.record_type}", flush=True)
        if args.stop_after and len(handled) >= args.stop_after:
            # Let the stream carry these answers, then stop (unconfirmed ones would be resent next time).
            threading.Timer(1.0, client.close).start()
        return [Verdict.received(), Verdict.accept("registered for export tax refund")]

    client.subscribe_forever(handle)  # reconnects with backoff until close()


if __name__ == "__main__":
    main()
