"""`ackhub`: run the hub, check its configuration, make keys, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hub.errors import ConfigError

if TYPE_CHECKING:
    from hub.config import Settings

EPILOG = """examples:
  ackhub serve --config examples/demo.toml
  ackhub config check examples/demo.toml
  ackhub keys generate tax --key-id tax-2026-01 --out keys/
  ackhub demo
  ackhub audit verify --config examples/demo.toml
  ackhub trace 020220260525641690 --token "$ACKHUB_TOKEN"
  ackhub proof verify proof.json
  ackhub adapters list
  ackhub pki init --dir pki && ackhub pki issue tax --ca-dir pki
  ackhub token issue --role operator --subject alice --jurisdiction 0202 --kid ops-1 --key ops-1.pem
  ackhub permit verify 26-AA-204966 --kind commerce.import_licence --uscc 91110000600037341L \\
      --office 0202 --hs 8703234210 --quantity 10 --unit 辆
  ackhub permit show 26-AA-204966
"""


def _freeze_startup_objects() -> None:
    """Keep what start-up built (modules, the ORM's metadata, protobuf descriptors, compiled statements)
    out of the garbage collector's full collections: it lives as long as the process, and walking it made
    each full collection a 45-60 ms pause of every thread, the slowest deliveries of a run at 200
    records/s (bench/exchange.py). Start-up's own garbage is collected first. For a process that runs
    one hub (`ackhub serve`), not for tests, which start many hubs in one process and would keep each
    stopped hub's reference cycles."""
    gc.collect()
    gc.freeze()


def _serve(args: argparse.Namespace) -> int:
    from hub.config import load_settings
    from hub.logging import configure
    from hub.server import HubServer

    environ = dict(os.environ)
    if args.database_url:
        environ["ACKHUB_DATABASE_URL"] = args.database_url
    if args.listen:
        environ["ACKHUB_LISTEN"] = args.listen
    try:
        settings = load_settings(args.config, environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    configure(settings.server.log_level)

    async def run() -> None:
        hub = HubServer(settings)
        await hub.start()
        _freeze_startup_objects()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await hub.stop()

    try:
        asyncio.run(run())
    except ConfigError as error:  # the record type catalogue, or a route without a schema
        print(error, file=sys.stderr)
        return 2
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from hub.config import load_settings

    try:
        settings = load_settings(args.file)
        _check_catalogue(settings)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    keys = sum(len(a.keys) for a in settings.agencies)
    print(
        f"{args.file}: OK — {len(settings.agencies)} agencies ({keys} keys), {len(settings.routes)} routes, "
        f"{len(settings.notifiers)} notifiers; database {settings.server.database_url}"
    )
    return 0


def _check_catalogue(settings: Settings) -> None:
    """The adapters' record type catalogue compiles and has a schema for every routed type."""
    from adapters.loader import load
    from hub.exchange.catalogue import build
    from hub.exchange.routing import Router

    Router(settings, build(load()))


def _keys_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hub.signing import private_key_pem, public_key_base64

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key_id = args.key_id or f"{args.agency}-k1"
    private = Ed25519PrivateKey.generate()
    secret = out / f"{key_id}.pem"
    if secret.exists():
        print(f"{secret} exists; refusing to overwrite a private key", file=sys.stderr)
        return 1
    secret.touch(mode=0o600)
    secret.write_text(private_key_pem(private))
    print(f"private key written to {secret} (mode 0600); keep it with the agency")
    print("add this to the hub's configuration:\n")
    print(f'[[agencies.keys]]  # of agency "{args.agency}"')
    print(f'id = "{key_id}"')
    print(f'public_key = "{public_key_base64(private.public_key())}"')
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    return int(
        run_demo(
            duration_s=args.duration,
            listen=args.listen,
            database_url=args.database_url,
            console_listen=args.console_listen,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ackhub",
        description="ackhub: the interagency data-exchange and acknowledgement hub. Agencies publish records; "
        "every recipient acknowledges each one with a signed receipt; what is not acknowledged in time is "
        "retried, then escalated to people.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the hub (gRPC, dispatcher, sweeps)")
    serve.add_argument("--config", required=True, help="TOML configuration file")
    serve.add_argument("--database-url", help="overrides [server].database_url and ACKHUB_DATABASE_URL")
    serve.add_argument("--listen", help="host:port to listen on (overrides [server].listen)")
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser("check", help="report every problem in a configuration file")
    check.add_argument("file")
    check.set_defaults(run=_config_check)

    keys = commands.add_parser("keys", help="acknowledgement signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = keys_commands.add_parser("generate", help="make an Ed25519 key pair for an agency")
    generate.add_argument("agency")
    generate.add_argument("--key-id", help="default: AGENCY-k1")
    generate.add_argument("--out", default=".", help="folder for the private key (default: here)")
    generate.set_defaults(run=_keys_generate)

    demo = commands.add_parser("demo", help="run the hub with simulated agencies and show what happens live")
    demo.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (default: never)"
    )
    demo.add_argument("--listen", default="127.0.0.1:7443")
    demo.add_argument("--database-url", default="sqlite:///var/demo.db")
    demo.add_argument("--console-listen", default="127.0.0.1:7480", help="the web console's address")
    demo.set_defaults(run=_demo)

    from hub.audit_cli import add_commands

    add_commands(commands)

    from hub.permits.cli import add_commands as add_permit_commands

    add_permit_commands(commands)

    from hub.auth.pki_cli import add_commands as add_pki_commands

    add_pki_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
