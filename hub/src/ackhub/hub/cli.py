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

from ackhub.core.errors import ConfigError

if TYPE_CHECKING:
    from ackhub.hub.config import Settings

EPILOG = """examples:
  ackhub serve --config examples/demo.toml
  ackhub serve --config deploy.toml --workers 2      # PostgreSQL: N processes, one address
  ackhub db upgrade --config deploy.toml
  ackhub config check examples/demo.toml
  ackhub keys generate tax --key-id tax-2026-01 --out keys/
  ackhub demo
  ackhub audit verify --config examples/demo.toml --witness http://127.0.0.1:7700 --witness-key "$W1"
  ackhub trace 020220260525641690 --token "$ACKHUB_TOKEN"
  ackhub proof verify proof.json --witness-key "$W1" --witness-key "$W2" --quorum 2
  ackhub witness serve --config witness.toml
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
    from ackhub.core.errors import StartupError
    from ackhub.hub.logging import configure
    from ackhub.hub.server import HubServer

    settings = _settings_or_exit(args)
    if args.workers > 1:
        from ackhub.hub.workers import run_workers

        command = [sys.executable, "-m", "ackhub.hub.cli", "serve", "--config", args.config]
        command += ["--database-url", args.database_url] if args.database_url else []
        command += ["--listen", args.listen] if args.listen else []
        try:
            return run_workers(settings, command, args.workers)
        except StartupError as error:
            print(f"ackhub serve: {error}", file=sys.stderr)
            return 2
    configure(settings.server.log_level)

    async def run() -> None:
        hub = HubServer(settings)
        try:
            await hub.start()
        except BaseException:
            await hub.stop()
            raise
        _freeze_startup_objects()
        if args.ready_file:
            Path(args.ready_file).touch()  # noqa: ASYNC240 (one empty file, once, before serving)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await hub.stop()

    try:
        asyncio.run(run())
    except StartupError as error:
        print(f"ackhub serve: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:  # the record type catalogue, or a route without a schema
        print(error, file=sys.stderr)
        return 2
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from ackhub.hub.store.db import HEAD_REVISION, Database, shown, stored_revision

    settings = _settings_or_exit(args)
    db = Database(settings.server.database_url, threads=1)
    try:
        stored = stored_revision(db.engine)
    except Exception as error:
        print(f"cannot reach {shown(settings.server.database_url)}: {error}", file=sys.stderr)
        return 2
    finally:
        db.close()
    state = "up to date" if stored == HEAD_REVISION else "needs `ackhub db upgrade`"
    print(
        f"{shown(settings.server.database_url)}: schema {stored or 'none'}; this hub: {HEAD_REVISION} ({state})"
    )
    return 0 if stored == HEAD_REVISION else 1


def _db_upgrade(args: argparse.Namespace) -> int:
    from ackhub.hub.store.db import HEAD_REVISION, Database, shown, stored_revision

    settings = _settings_or_exit(args)
    db = Database(settings.server.database_url, threads=1)
    try:
        before = stored_revision(db.engine)
        db.migrate()
    finally:
        db.close()
    where = shown(settings.server.database_url)
    if before == HEAD_REVISION:
        print(f"{where}: already at schema {HEAD_REVISION}")
    else:
        print(f"{where}: schema {before or 'none'} → {HEAD_REVISION}")
    return 0


def _settings_or_exit(args: argparse.Namespace) -> Settings:
    """`--config` with the `--database-url` (and `--listen`, where the command has it) overrides; a
    configuration with problems is printed and exits 2."""
    from ackhub.hub.config import load_settings

    environ = dict(os.environ)
    if args.database_url:
        environ["ACKHUB_DATABASE_URL"] = args.database_url
    if getattr(args, "listen", None):
        environ["ACKHUB_LISTEN"] = args.listen
    try:
        return load_settings(args.config, environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None


def _config_check(args: argparse.Namespace) -> int:
    from ackhub.hub.config import load_settings

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
    from ackhub.adapters.loader import load
    from ackhub.hub.exchange.catalogue import build
    from ackhub.hub.exchange.routing import Router

    Router(settings, build(load()))


def _keys_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ackhub.audit.acks import private_key_pem, public_key_base64

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
    from ackhub.hub.demo import run_demo

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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N hub processes behind the same address, sharing the PostgreSQL database (default 1; "
        "SIGHUP restarts them one at a time; docs/deploy.md)",
    )
    serve.add_argument("--ready-file", help=argparse.SUPPRESS)  # touched once serving (for --workers)
    serve.set_defaults(run=_serve)

    db = commands.add_parser(
        "db",
        help="the hub's database schema",
        description="Every hub process checks the schema at start and refuses a database at an older "
        "revision: upgrade it once, on purpose, with `ackhub db upgrade` (a new, empty database is "
        "migrated by the first hub that starts on it).",
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, run, text in (
        ("status", _db_status, "show the database's schema revision and this hub's (exit 1 if they differ)"),
        ("upgrade", _db_upgrade, "migrate the database to this hub's schema revision"),
    ):
        action = db_commands.add_parser(name, help=text, description=text)
        action.add_argument("--config", required=True, help="TOML configuration file")
        action.add_argument("--database-url", help="overrides [server].database_url")
        action.set_defaults(run=run)

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

    from ackhub.hub.audit_cli import add_commands

    add_commands(commands)

    from ackhub.client.cli import add_commands as add_client_commands

    add_client_commands(commands)

    from ackhub.client.witness.cli import add_commands as add_witness_commands

    add_witness_commands(commands)

    from ackhub.hub.permits.cli import add_commands as add_permit_commands

    add_permit_commands(commands)

    from ackhub.hub.auth.pki_cli import add_commands as add_pki_commands

    add_pki_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
