"""`ackhub pki init` and `ackhub pki issue AGENCY`: a development CA for mutual TLS (ackhub.hub.auth.pki)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from ackhub.hub.auth import pki


def _init(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    try:
        ca = pki.make_ca("ackhub development CA", now=now, days=args.days)
        pki.write(ca, out / pki.CA_CERT, out / pki.CA_KEY)
        hub = pki.issue(ca, "ackhub hub", now=now, days=args.days, server_hosts=tuple(args.host))
        pki.write(hub, out / pki.HUB_CERT, out / pki.HUB_KEY)
    except FileExistsError as exc:
        print(f"{exc.filename} exists; refusing to overwrite a private key", file=sys.stderr)
        return 1
    print(f"CA and hub certificate written to {out} (private keys mode 0600). In [server]:")
    print(f'tls_cert_file = "{out / pki.HUB_CERT}"\ntls_key_file = "{out / pki.HUB_KEY}"')
    print(f'tls_client_ca_file = "{out / pki.CA_CERT}"')
    return 0


def _issue(args: argparse.Namespace) -> int:
    ca_dir, out = Path(args.ca_dir), Path(args.out or args.ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    ca = pki.load(ca_dir / pki.CA_CERT, ca_dir / pki.CA_KEY)
    issued = pki.issue(ca, args.agency, now=dt.datetime.now(dt.UTC), days=args.days)
    try:
        pki.write(issued, out / f"{args.agency}.pem", out / f"{args.agency}-key.pem")
    except FileExistsError as exc:
        print(f"{exc.filename} exists; refusing to overwrite a private key", file=sys.stderr)
        return 1
    print(f"client certificate for agency {args.agency!r}: {out / (args.agency + '.pem')} (+ -key.pem, 0600)")
    return 0


def add_commands(commands: Any) -> None:
    """Register `pki` on `ackhub`'s subparsers."""
    pki_parser = commands.add_parser("pki", help="a development certificate authority for mutual TLS")
    actions = pki_parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="make a CA and the hub's server certificate")
    init.add_argument("--dir", default="pki", help="where to write them (default: pki/)")
    init.add_argument("--host", action="append", default=["127.0.0.1", "localhost"], help="hub host name/IP")
    init.add_argument("--days", type=int, default=365)
    init.set_defaults(run=_init)
    issue = actions.add_parser("issue", help="a client certificate for an agency (its id is the common name)")
    issue.add_argument("agency")
    issue.add_argument("--ca-dir", default="pki", help="the folder `pki init` wrote")
    issue.add_argument("--out", help="where to write it (default: the CA folder)")
    issue.add_argument("--days", type=int, default=90)
    issue.set_defaults(run=_issue)
