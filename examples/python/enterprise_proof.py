"""An exporter checks where its record went and verifies the delivery proof offline.

    python examples/python/enterprise_proof.py --target 127.0.0.1:7443 --token "$JWT" \
        --hub-key <base64 of the hub's checkpoint public key> [--out proof.json] \
        [--witness-key <a trusted witness's verifier key> ... --quorum K]
"""

from __future__ import annotations

import argparse
import sys

from ackhub.audit.acks import load_public_key
from ackhub.audit.note import parse_vkey
from ackhub.audit.proofs import WitnessPolicy
from ackhub.client import EnterpriseClient
from ackhub.v1 import types_pb2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:7443")
    parser.add_argument("--token", required=True, help="a JWT carrying your USCC")
    parser.add_argument("--hub-key", required=True, help="the hub's checkpoint public key (pin it)")
    parser.add_argument("--out", default="", help="also save the newest record's proof here")
    parser.add_argument("--witness-key", action="append", default=[], help="a witness you trust (repeatable)")
    parser.add_argument("--quorum", type=int, help="how many of them must have cosigned (default: all)")
    args = parser.parse_args()

    client = EnterpriseClient(args.target, args.token)
    records = list(client.list_records())
    for traced in records:
        states = ", ".join(
            f"{d.recipient}={types_pb2.DeliveryState.Name(d.state).removeprefix('DELIVERY_STATE_')}"
            for d in traced.deliveries
        )
        print(f"{traced.record.record_id} {traced.record.record_type}: {states}")
    if not records:
        print("no records")
        return 1
    newest = records[0].record.record_id
    for recipient in client.trace(newest).recipients:
        for event in recipient.events:
            print(f"  {recipient.agency_id}: {event.detail}")
    document = client.download_proof(newest, args.out or None)
    witnesses = tuple(parse_vkey(key) for key in args.witness_key)
    policy = WitnessPolicy(witnesses, len(witnesses) if args.quorum is None else args.quorum)
    verdict = client.verify_proof(document, load_public_key(args.hub_key), policy)
    print("\n".join(verdict.statements + [f"FAILED: {f}" for f in verdict.failures]))
    client.close()
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
